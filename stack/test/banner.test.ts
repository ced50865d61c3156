/** The banner `npm start` prints: the addresses and stores this start really uses. */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createLogger } from '@ghostpay/platform';
import { freshDatabase } from '@ghostpay/test-support';
import { describe, expect, inject, it } from 'vitest';
import { formatBanner } from '../src/banner.ts';
import { type Stack, startStack } from '../src/index.ts';

const run = promisify(execFile);

async function withStack(env: Record<string, string | undefined>, body: (stack: Stack, dataDir: string) => Promise<void>) {
  const dataDir = mkdtempSync(join(tmpdir(), 'ghostpay-banner-'));
  const stack = await startStack({
    dataDir,
    randomPorts: true,
    env: { ...process.env, DATABASE_URL: undefined, SECRETS_DIR: undefined, REDIS_URL: undefined, MONGODB_URL: undefined, ...env },
    logger: createLogger({ service: 'banner', level: 'silent' }),
  });
  try {
    await body(stack, dataDir);
  } finally {
    await stack.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

/** The "Try:" command of a banner, as a shell would read it. */
const tryCommand = (banner: string) => banner.slice(banner.indexOf('Try:') + 'Try:'.length).trim();

describe('the npm start banner', () => {
  it('prints a Try command for the bridge this start listens on, which works', async () => {
    await withStack({}, async (stack, dataDir) => {
      const banner = formatBanner(stack);
      expect(banner).not.toContain('localhost:8080');
      const command = tryCommand(banner);
      expect(command).toContain(`${stack.urls.bridge}/auth/token`);
      const { stdout } = await run('bash', ['-euo', 'pipefail', '-c', command], { env: { PATH: process.env.PATH } });
      expect(JSON.parse(stdout)).toMatchObject({ access_token: expect.any(String), token_type: 'Bearer' });
      expect(banner).toMatch(new RegExp(`Database +PGlite ${join(dataDir, 'pglite')}`));
      expect(banner).toMatch(/Analytics +embedded store/);
      expect(banner).toMatch(/Rate limits +in process/);
    });
  }, 120_000);

  it.skipIf(!inject('postgresAdminUrl'))(
    'names PostgreSQL, without its password, when DATABASE_URL is set',
    async () => {
      const database = await freshDatabase({ poolSize: 2 });
      try {
        await withStack({ DATABASE_URL: database.url }, async (stack) => {
          const banner = formatBanner(stack);
          expect(banner).not.toContain('PGlite');
          const url = new URL(database.url);
          expect(banner).toMatch(new RegExp(`Database +PostgreSQL postgres://${url.username}@${url.host}${url.pathname}`));
          if (url.password) expect(banner).not.toContain(url.password);
        });
      } finally {
        await database.close();
      }
    },
    120_000,
  );
});
