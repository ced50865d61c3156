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
      expect(banner).toMatch(new RegExp(`Analytics +embedded store ${join(dataDir, 'analytics')}\n`));
      expect(banner).toMatch(/Rate limits +in process/);
    });
  }, 120_000);

  it.skipIf(!inject('postgresAdminUrl'))(
    'names PostgreSQL, without its password, when DATABASE_URL is set',
    async () => {
      const database = await freshDatabase({ poolSize: 2 });
      // The test cluster trusts loopback connections and ignores a password, so the URL can carry
      // one: without it there would be no password for the banner to leave out.
      const url = new URL(database.url);
      url.password = 'banner-test-password';
      url.search = 'application_name=banner-test';
      try {
        await withStack({ DATABASE_URL: url.href }, async (stack) => {
          const banner = formatBanner(stack);
          expect(banner).not.toContain('PGlite');
          expect(banner).toMatch(new RegExp(`Database +PostgreSQL postgres://${url.username}@${url.host}${url.pathname}\\n`));
          expect(banner).not.toContain('banner-test-password');
        });
      } finally {
        await database.close();
      }
    },
    120_000,
  );
});
