/** The stack's log lines: one JSON object each, with one `service`, the one that wrote it. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger } from '@ghostpay/platform';
import { describe, expect, it } from 'vitest';
import { startStack } from '../src/index.ts';

describe('stack log lines', () => {
  it('name the service that wrote them once, not the stack and then the service', async () => {
    const lines: string[] = [];
    const destination = { write: (line: string) => void lines.push(line) };
    const dataDir = mkdtempSync(join(tmpdir(), 'ghostpay-log-lines-'));
    const stack = await startStack({
      dataDir,
      randomPorts: true,
      env: { ...process.env, DATABASE_URL: undefined, SECRETS_DIR: undefined, REDIS_URL: undefined, MONGODB_URL: undefined },
      logger: createLogger({ service: 'stack', level: 'info', destination }),
      log: { level: 'info', destination },
    });
    try {
      const response = await fetch(`${stack.urls.bridge}/auth/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ api_key: 'gp_000000000000_0000000000000000000000000000000000000000000' }),
      });
      expect(response.status).toBe(401);
    } finally {
      await stack.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
    expect(lines.length).toBeGreaterThan(5);
    for (const line of lines) expect(line.match(/"service":/g), line).toHaveLength(1);
    const services = new Set(lines.map((line) => (JSON.parse(line) as { service: string }).service));
    for (const service of ['auth', 'cards', 'charges', 'analytics', 'router', 'openapi-bridge'])
      expect(services, service).toContain(service);
  }, 120_000);
});
