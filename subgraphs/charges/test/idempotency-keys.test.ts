import { chargeIdempotencyKeys, charges } from '@ghostpay/db';
import { eq } from 'drizzle-orm';
import { afterEach, describe, expect, it } from 'vitest';
import { pruneIdempotencyKeys } from '../src/idempotency.ts';
import { authorizeCharge, checkLedger } from '../src/index.ts';
import { merchantDatabase } from './charges-harness.ts';

describe('idempotency keys', () => {
  const fx = merchantDatabase();
  afterEach(async () => expect(await checkLedger(fx.database)).toEqual([]));

  it('answers IDEMPOTENCY_KEY_IN_USE when the original stays in flight past the wait, then works once it is gone', async () => {
    const card = await fx.seed.card({ ownerId: fx.holderId, issuerId: fx.merchantId });
    const pool = fx.database.pool;
    if (!pool) throw new Error('needs PostgreSQL');
    // Another request holding the same key in an open transaction.
    const inFlight = await pool.connect();
    try {
      await inFlight.query('begin');
      await inFlight.query(
        `insert into charges.idempotency_keys (principal_id, key, operation, fingerprint, state) values ($1, 'busy', 'create_charge', 'f', 'in_progress')`,
        [fx.merchantId],
      );
      // Refused while the original is still in flight (it rolls back only below): the 300 ms
      // wait bound fired, or this would wait for it forever.
      await expect(
        authorizeCharge(
          { db: fx.database.db, idempotencyWaitMs: 300 },
          fx.principal(),
          { cardId: card.id, amount: 100, currency: 'USD' },
          'busy',
        ),
      ).rejects.toMatchObject({ extensions: { code: 'IDEMPOTENCY_KEY_IN_USE' } });
      expect(await fx.database.db.select().from(charges).where(eq(charges.cardId, card.id))).toEqual([]);
      await inFlight.query('rollback');
    } finally {
      inFlight.release();
    }
    const { charge } = await authorizeCharge(
      { db: fx.database.db, idempotencyWaitMs: 300 },
      fx.principal(),
      { cardId: card.id, amount: 100, currency: 'USD' },
      'busy',
    );
    expect(charge.status).toBe('AUTHORIZED');
  });

  it('prunes keys older than the retention and keeps recent ones', async () => {
    await fx.database.db.insert(chargeIdempotencyKeys).values([
      {
        principalId: fx.merchantId,
        key: 'old',
        operation: 'create_charge',
        fingerprint: 'f',
        state: 'completed',
        createdAt: new Date(Date.now() - 25 * 3600_000),
      },
      {
        principalId: fx.merchantId,
        key: 'recent',
        operation: 'create_charge',
        fingerprint: 'f',
        state: 'completed',
        createdAt: new Date(Date.now() - 23 * 3600_000),
      },
    ]);
    expect(await pruneIdempotencyKeys(fx.database.db, 24)).toBe(1);
    const keys = (await fx.database.db.select({ key: chargeIdempotencyKeys.key }).from(chargeIdempotencyKeys)).map((k) => k.key);
    expect(keys).toContain('recent');
    expect(keys).not.toContain('old');
  });
});
