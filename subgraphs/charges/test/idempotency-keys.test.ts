import { chargeIdempotencyKeys, charges } from '@ghostpay/db';
import { createSeed, freshDatabase, type TestDatabase } from '@ghostpay/test-support';
import { eq } from 'drizzle-orm';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { pruneIdempotencyKeys } from '../src/idempotency.ts';
import { authorizeCharge, checkLedger } from '../src/index.ts';

describe('idempotency keys', () => {
  let database: TestDatabase;
  let seed: ReturnType<typeof createSeed>;
  let merchantId: string;
  let holderId: string;

  beforeAll(async () => {
    database = await freshDatabase();
    seed = createSeed(database.db);
    merchantId = (await seed.user('merchant')).id;
    holderId = (await seed.user('user')).id;
  });
  afterAll(async () => database?.close());
  afterEach(async () => expect(await checkLedger(database)).toEqual([]));

  const principal = () => ({ userId: merchantId, role: 'merchant' as const, scopes: [], apiKeyId: 'k', tokenId: 't', expiresAt: 0 });

  it('answers IDEMPOTENCY_KEY_IN_USE when the original stays in flight past the wait, then works once it is gone', async () => {
    const card = await seed.card({ ownerId: holderId, issuerId: merchantId });
    const pool = database.pool;
    if (!pool) throw new Error('needs PostgreSQL');
    // Another request holding the same key in an open transaction.
    const inFlight = await pool.connect();
    try {
      await inFlight.query('begin');
      await inFlight.query(
        `insert into charges.idempotency_keys (principal_id, key, operation, fingerprint, state) values ($1, 'busy', 'create_charge', 'f', 'in_progress')`,
        [merchantId],
      );
      const started = Date.now();
      await expect(
        authorizeCharge(
          { db: database.db, idempotencyWaitMs: 300 },
          principal(),
          { cardId: card.id, amount: 100, currency: 'USD' },
          'busy',
        ),
      ).rejects.toMatchObject({ extensions: { code: 'IDEMPOTENCY_KEY_IN_USE' } });
      expect(Date.now() - started).toBeLessThan(3_000);
      expect(await database.db.select().from(charges).where(eq(charges.cardId, card.id))).toEqual([]);
      await inFlight.query('rollback');
    } finally {
      inFlight.release();
    }
    const { charge } = await authorizeCharge(
      { db: database.db, idempotencyWaitMs: 300 },
      principal(),
      { cardId: card.id, amount: 100, currency: 'USD' },
      'busy',
    );
    expect(charge.status).toBe('AUTHORIZED');
  });

  it('prunes keys older than the retention and keeps recent ones', async () => {
    await database.db.insert(chargeIdempotencyKeys).values([
      {
        principalId: merchantId,
        key: 'old',
        operation: 'create_charge',
        fingerprint: 'f',
        state: 'completed',
        createdAt: new Date(Date.now() - 25 * 3600_000),
      },
      {
        principalId: merchantId,
        key: 'recent',
        operation: 'create_charge',
        fingerprint: 'f',
        state: 'completed',
        createdAt: new Date(Date.now() - 23 * 3600_000),
      },
    ]);
    expect(await pruneIdempotencyKeys(database.db, 24)).toBe(1);
    const keys = (await database.db.select({ key: chargeIdempotencyKeys.key }).from(chargeIdempotencyKeys)).map((k) => k.key);
    expect(keys).toContain('recent');
    expect(keys).not.toContain('old');
  });
});
