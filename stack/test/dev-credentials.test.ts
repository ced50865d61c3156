/**
 * The dev credentials (data directory) against the database they were seeded in (DATABASE_URL):
 * every start leaves keys that work in the database it opened, whichever of the two is new.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger } from '@ghostpay/platform';
import { subscriptionsApiKeySecret } from '@ghostpay/router';
import { freshDatabase, type TestDatabase } from '@ghostpay/test-support';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { type Stack, startStack } from '../src/index.ts';

let databaseA: TestDatabase;
let databaseB: TestDatabase;
let databaseC: TestDatabase;
const dirs: string[] = [];
const newDataDir = () => {
  const dir = mkdtempSync(join(tmpdir(), 'ghostpay-creds-'));
  dirs.push(dir);
  return dir;
};

beforeAll(async () => {
  databaseA = await freshDatabase({ poolSize: 2 });
  databaseB = await freshDatabase({ poolSize: 2 });
  databaseC = await freshDatabase({ poolSize: 2 });
});
afterAll(async () => {
  await databaseA?.close();
  await databaseB?.close();
  await databaseC?.close();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/**
 * `database`'s URL with a password, which the test cluster (trust on loopback) ignores: the
 * credentials file must record the database without it.
 */
const passwordInUrl = 'dev-credentials-test-password';
function withPassword(url: string): string {
  const parsed = new URL(url);
  parsed.password = passwordInUrl;
  return parsed.href;
}

/** Starts the stack on `dataDir` against `database`, runs `body`, and always stops it. */
async function withStack(
  dataDir: string,
  database: TestDatabase,
  body: (stack: Stack) => Promise<void>,
  extraEnv: Record<string, string> = {},
) {
  const env = {
    ...process.env,
    DATABASE_URL: database.url ? withPassword(database.url) : undefined,
    REDIS_URL: undefined,
    MONGODB_URL: undefined,
    SECRETS_DIR: undefined,
    ...extraEnv,
  };
  const stack = await startStack({ dataDir, env, randomPorts: true, logger: createLogger({ service: 'stack-test', level: 'silent' }) });
  try {
    await body(stack);
  } finally {
    await stack.close();
  }
}

/** The HTTP status of a token exchange for `apiKey` through the stack's REST bridge. */
async function exchange(stack: Stack, apiKey: string): Promise<number> {
  const response = await fetch(`${stack.urls.bridge}/auth/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ api_key: apiKey }),
  });
  await response.arrayBuffer();
  return response.status;
}

const routerKey = (dataDir: string) => readFileSync(join(dataDir, 'secrets', subscriptionsApiKeySecret), 'utf8').trim();
const credentialsFile = (dataDir: string) => JSON.parse(readFileSync(join(dataDir, 'dev-credentials.json'), 'utf8'));

// Two databases behind one data directory need PostgreSQL (DATABASE_URL): without a cluster
// (outside CI only) freshDatabase gives an in-memory PGlite that has no URL.
describe.skipIf(!inject('postgresAdminUrl'))('dev credentials and the database they belong to', () => {
  const dataDir = newDataDir();
  let seededInA: Record<string, { userId: string; apiKey: string }>;

  it('seeds database A on a new data directory, and records which database the keys belong to', async () => {
    await withStack(dataDir, databaseA, async (stack) => {
      expect(stack.firstStart).toBe(true);
      seededInA = { admin: stack.credentials.admin, merchant: stack.credentials.merchant, user: stack.credentials.user };
      expect(await exchange(stack, stack.credentials.merchant.apiKey)).toBe(200);
      const recorded = new URL(credentialsFile(dataDir).database);
      expect(recorded.pathname).toBe(new URL(databaseA.url).pathname);
      expect(recorded.password).toBe('');
      expect(readFileSync(join(dataDir, 'dev-credentials.json'), 'utf8')).not.toContain(passwordInUrl);
    });
  }, 120_000);

  it('issues keys valid in database B when the same data directory is started with a new DATABASE_URL', async () => {
    await withStack(dataDir, databaseB, async (stack) => {
      expect(stack.firstStart).toBe(true);
      for (const role of ['admin', 'merchant', 'user'] as const) {
        expect(await exchange(stack, stack.credentials[role].apiKey), role).toBe(200);
      }
      expect(credentialsFile(dataDir).merchant).toEqual(stack.credentials.merchant);
      expect(new URL(credentialsFile(dataDir).database).pathname).toBe(new URL(databaseB.url).pathname);
      // The router's own key file (upstream subscriptions) is kept valid the same way.
      expect(await exchange(stack, routerKey(dataDir))).toBe(200);
    });
  }, 120_000);

  it('issues fresh keys for the same users when the credentials file is lost', async () => {
    const dataDir = newDataDir();
    let merchant = '';
    await withStack(dataDir, databaseC, async (stack) => {
      merchant = stack.credentials.merchant.userId;
    });
    rmSync(join(dataDir, 'dev-credentials.json'));
    await withStack(dataDir, databaseC, async (stack) => {
      expect(stack.credentials.merchant.userId).toBe(merchant);
      expect(stack.firstStart).toBe(true);
      expect(await exchange(stack, stack.credentials.merchant.apiKey)).toBe(200);
      expect(credentialsFile(dataDir).merchant).toEqual(stack.credentials.merchant);
    });
    // A restart reuses the keys it wrote: nothing new is issued.
    const written = credentialsFile(dataDir);
    await withStack(dataDir, databaseC, async (stack) => {
      expect(stack.firstStart).toBe(false);
      expect(stack.credentials).toEqual(written);
    });
  }, 120_000);

  it('starts a new data directory sharing the secrets against the already-seeded database A, with fresh keys for the same users', async () => {
    const fresh = newDataDir();
    await withStack(
      fresh,
      databaseA,
      async (stack) => {
        expect(stack.firstStart).toBe(true);
        for (const role of ['admin', 'merchant', 'user'] as const) {
          expect(stack.credentials[role].userId, role).toBe(seededInA[role]!.userId);
          expect(await exchange(stack, stack.credentials[role].apiKey), role).toBe(200);
        }
      },
      { SECRETS_DIR: join(dataDir, 'secrets') },
    );
  }, 120_000);

  it('refuses to start a new data directory with its own secrets against database A, saying why, instead of seeding keys auth cannot sign for', async () => {
    await expect(withStack(newDataDir(), databaseA, async () => {})).rejects.toThrow(
      /holds signing keys that .*signing-kek cannot decrypt: the database was set up with another data directory's secrets/,
    );
  }, 120_000);
});
