import { apiKeys } from '@ghostpay/db';
import { eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRevokedKeys } from '../src/revoked-keys.ts';
import { createUserLookups } from '../src/users.ts';
import { type AuthHarness, startAuth } from './auth-harness.ts';

describe('the revoked-key cache when a read races the revocation', () => {
  let auth: AuthHarness;
  beforeAll(async () => {
    auth = await startAuth();
  });
  afterAll(() => auth?.close());

  it('does not remember or share a read that started before the key was revoked and forgotten', async () => {
    const user = await auth.seed('user');
    const lookups = createUserLookups(auth.database.db);
    // The first read sees the key unrevoked, then its answer is held until the revocation is done.
    let release!: () => void;
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    let reads = 0;
    const revokedKeys = createRevokedKeys(
      {
        apiKeysByIds: async (ids, values) => {
          reads++;
          const rows = await lookups.apiKeysByIds(ids, values);
          if (reads === 1) await held;
          return rows;
        },
      },
      { ttlMs: 60_000 },
    );
    const before = revokedKeys.isRevoked(user.apiKeyId);
    while (reads === 0) await new Promise((resolve) => setImmediate(resolve));
    // This replica revokes the key (as revokeApiKey does: the row, then forget).
    await auth.database.db.update(apiKeys).set({ revokedAt: sql`now()` }).where(eq(apiKeys.id, user.apiKeyId));
    revokedKeys.forget(user.apiKeyId);
    // A request after the revocation reads afresh rather than joining the stale read.
    const during = revokedKeys.isRevoked(user.apiKeyId);
    release();
    // The stale read answers the request that started before the revocation, as it was...
    expect(await before).toBe(false);
    expect(await during).toBe(true);
    // ...and is not remembered for the TTL: later requests are refused at once.
    expect(await revokedKeys.isRevoked(user.apiKeyId)).toBe(true);
    expect(reads).toBe(2);
  });
});
