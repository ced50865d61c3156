import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const main = fileURLToPath(new URL('../src/main.ts', import.meta.url));
const portVariables = ['ROUTER_PORT', 'AUTH_PORT', 'CARDS_PORT', 'CHARGES_PORT', 'ANALYTICS_PORT', 'BRIDGE_PORT'];

describe('npm start', () => {
  it('prints the banner with the URLs and keys, and stops cleanly on SIGTERM', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'ghostpay-start-'));
    const env: Record<string, string | undefined> = { ...process.env, GHOSTPAY_DATA_DIR: dataDir, LOG_LEVEL: 'warn' };
    // NODE_ENV as a shell gives it (unset), not vitest's `test`: Apollo Server installs its own
    // signal handlers outside `test`, and those once killed the process mid-shutdown (exit 143).
    for (const name of ['DATABASE_URL', 'REDIS_URL', 'MONGODB_URL', 'SECRETS_DIR', 'NODE_ENV']) delete env[name];
    for (const name of portVariables) env[name] = '0';
    const child = spawn(process.execPath, [main], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      let output = '';
      child.stdout.setEncoding('utf8');
      child.stderr.setEncoding('utf8');
      child.stderr.on('data', (chunk: string) => (output += chunk));
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no banner within 90 s:\n${output}`)), 90_000);
        child.stdout.on('data', (chunk: string) => {
          output += chunk;
          if (output.includes('Dev API keys')) {
            clearTimeout(timer);
            resolve();
          }
        });
        child.once('exit', (code) => reject(new Error(`exited ${code} before the banner:\n${output}`)));
      });
      expect(output).toMatch(/GraphQL\s+http:\/\/127\.0\.0\.1:\d+\/graphql/);
      expect(output).toMatch(/REST docs\s+http:\/\/127\.0\.0\.1:\d+\/docs/);
      expect(output).toMatch(/merchant\s+\S+\s+user usr_/);
      expect(existsSync(join(dataDir, 'dev-credentials.json'))).toBe(true);
      child.kill('SIGTERM');
      const [code, signal] = await once(child, 'exit');
      expect({ code, signal }).toEqual({ code: 0, signal: null });
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
      rmSync(dataDir, { recursive: true, force: true });
    }
  }, 120_000);
});
