import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { selfSignedCertificate } from '@ghostpay/test-support';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Bridge, bridgeConfigSchema, createBridge } from '../src/index.ts';
import { silentLogger } from './stack-harness.ts';

describe('the bridge over TLS', () => {
  const dir = mkdtempSync(join(tmpdir(), 'bridge-tls-'));
  let bridge: Bridge;
  const agent = new Agent({ connect: { rejectUnauthorized: false } });

  beforeAll(async () => {
    const { certFile, keyFile } = selfSignedCertificate(dir);
    bridge = createBridge({
      config: bridgeConfigSchema.parse({ LOG_LEVEL: 'silent', SHUTDOWN_TIMEOUT_MS: '200', ROUTER_URL: 'http://127.0.0.1:9/graphql' }),
      logger: silentLogger,
      tls: { key: readFileSync(keyFile), cert: readFileSync(certFile) },
    });
    await bridge.start(0);
  });

  afterAll(async () => {
    await bridge?.close();
    await agent.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('sends HSTS on every answer', async () => {
    expect(bridge.url).toMatch(/^https:/);
    const response = await request(`${bridge.url}/openapi.json`, { dispatcher: agent });
    await response.body.dump();
    expect(response.statusCode).toBe(200);
    expect(response.headers['strict-transport-security']).toBe('max-age=31536000; includeSubDomains');
  });
});
