import { chargeIdempotencyKeys, charges } from '@ghostpay/db';
import { eq } from 'drizzle-orm';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { pruneIdempotencyKeys } from '../src/idempotency.ts';
import { authorizeCharge, checkLedger } from '../src/index.ts';
import {
  type ChargeJson,
  createChargeMutation,
  type Harness,
  merchantDatabase,
  refundChargeMutation,
  startHarness,
} from './charges-harness.ts';

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
      ).rejects.toMatchObject({ extensions: { code: 'IDEMPOTENCY_KEY_IN_USE', retryAfter: 1 } });
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

// What a GraphQL client is told when its duplicate meets the original still in flight: when to
// retry (extensions.retryAfter, seconds, as RATE_LIMITED's), from the service's wait bound.
describe('IDEMPOTENCY_KEY_IN_USE over GraphQL', () => {
  let h: Harness;
  let merchantId: string;
  let bearer: string;
  beforeAll(async () => {
    // 1.5 s: the hint is the bound rounded up to whole seconds, 2 (neither 1 nor the default's 5).
    h = await startHarness({ IDEMPOTENCY_WAIT_MS: '1500' });
    merchantId = (await h.seed.user('merchant')).id;
    bearer = await h.tokens.bearer({ userId: merchantId, role: 'merchant' });
  });
  afterAll(async () => h?.close());

  /** Runs `duplicate` while another transaction holds `key` for `operation` in progress, then lets it go. */
  async function whileKeyHeld<T>(operation: string, key: string, duplicate: () => Promise<T>): Promise<T> {
    const pool = h.database.pool;
    if (!pool) throw new Error('needs PostgreSQL');
    const inFlight = await pool.connect();
    try {
      await inFlight.query('begin');
      await inFlight.query(
        `insert into charges.idempotency_keys (principal_id, key, operation, fingerprint, state) values ($1, $2, $3, 'f', 'in_progress')`,
        [merchantId, key, operation],
      );
      return await duplicate();
    } finally {
      await inFlight.query('rollback');
      inFlight.release();
    }
  }

  it('gives a duplicate createCharge and refundCharge extensions.retryAfter = the wait bound in seconds, and the retry then runs', async () => {
    const holderId = (await h.seed.user('user')).id;
    const card = await h.seed.card({ ownerId: holderId, issuerId: merchantId, amount: 5_000, currency: 'USD' });
    const create = () =>
      h.gql<{ createCharge: ChargeJson }>(
        createChargeMutation,
        { input: { cardId: card.id, amount: 700, currency: 'USD' }, key: 'race-c' },
        bearer,
      );
    const refused = await whileKeyHeld('create_charge', 'race-c', create);
    expect(refused.errors).toEqual([
      expect.objectContaining({ extensions: expect.objectContaining({ code: 'IDEMPOTENCY_KEY_IN_USE', retryAfter: 2 }) }),
    ]);
    expect(refused.errors?.[0]?.message).toContain('2 s');
    const created = await create();
    expect(created.data?.createCharge.status).toBe('AUTHORIZED');

    const chargeId = created.data?.createCharge.id;
    const refund = () => h.gql<{ refundCharge: ChargeJson }>(refundChargeMutation, { id: chargeId, amount: 100, key: 'race-r' }, bearer);
    const refusedRefund = await whileKeyHeld('refund_charge', 'race-r', refund);
    expect(refusedRefund.errors?.[0]?.extensions).toEqual({ code: 'IDEMPOTENCY_KEY_IN_USE', retryAfter: 2 });
    expect((await refund()).data?.refundCharge).toMatchObject({ status: 'PARTIALLY_REFUNDED', refundedAmount: 100 });
    await h.expectLedgerClean();
  });
});
