import { cards, chargeEvents, chargeIdempotencyKeys, charges, refunds } from '@ghostpay/db';
import { whileAnotherTransactionHolds } from '@ghostpay/test-support';
import { and, asc, eq } from 'drizzle-orm';
import { afterEach, describe, expect, it } from 'vitest';
import { toSnapshot } from '../src/charge-record.ts';
import { authorizeCharge, type ChargeEventNotice, chargeEventsChannel, checkLedger, refundCharge, settleDueCharges } from '../src/index.ts';
import { merchantDatabase } from './charges-harness.ts';

// authorizeCharge writes a new charge, its event, the NOTIFY and the idempotency replay in
// one statement from a row it builds itself (timestamps = the claim's now(), but for an
// authorization's moment, which the statement reads once it holds the card and returns).
// These tests hold it to what it stored.
describe('charge writes', () => {
  const fx = merchantDatabase();
  afterEach(async () => expect(await checkLedger(fx.database)).toEqual([]));

  const authorize = (cardId: string, key: string, waitMs = 5_000) =>
    authorizeCharge(
      { db: fx.database.db, idempotencyWaitMs: waitMs },
      fx.principal(),
      { cardId, amount: 700, currency: 'USD', description: 'tea' },
      key,
    );

  async function stored(chargeId: string) {
    const [row] = await fx.database.db.select().from(charges).where(eq(charges.id, chargeId));
    const events = await fx.database.db
      .select()
      .from(chargeEvents)
      .where(eq(chargeEvents.chargeId, chargeId))
      .orderBy(asc(chargeEvents.id));
    const keys = await fx.database.db.select().from(chargeIdempotencyKeys).where(eq(chargeIdempotencyKeys.chargeId, chargeId));
    return { row, events, keys };
  }

  it('returns exactly the row it stored, and the event and the replay hold that row (authorized, then declined)', async () => {
    const card = await fx.seed.card({ ownerId: fx.holderId, issuerId: fx.merchantId, amount: 1_000, currency: 'USD' });
    const notices: ChargeEventNotice[] = [];
    const unlisten = await fx.database.listen(chargeEventsChannel, (payload) => notices.push(JSON.parse(payload) as ChargeEventNotice));
    try {
      for (const [key, status] of [
        ['w-1', 'AUTHORIZED'],
        ['w-2', 'DECLINED'],
      ] as const) {
        const { charge, replayed } = await authorize(card.id, key);
        expect(replayed).toBe(false);
        expect(charge.status).toBe(status);
        const { row, events, keys } = await stored(charge.id);
        expect(row).toEqual(charge);
        expect(events).toHaveLength(1);
        expect(events[0]).toMatchObject({ status, data: toSnapshot(charge) });
        // Stamped with the state it records: an authorization's moment, a decline's now().
        expect(events[0]?.createdAt).toEqual(charge.updatedAt);
        expect(keys).toHaveLength(1);
        expect(keys[0]).toMatchObject({ key, state: 'completed', response: toSnapshot(charge), lockedUntil: null });
        expect(keys[0]?.completedAt).toEqual(charge.createdAt);
        expect((await authorize(card.id, key)).charge).toEqual(charge);
        await expect
          .poll(() => notices.find((notice) => notice.chargeId === charge.id))
          .toEqual({ chargeId: charge.id, status, eventId: events[0]?.id });
      }
      const [cardRow] = await fx.database.db.select().from(cards).where(eq(cards.id, card.id));
      expect(cardRow?.status).toBe('USED');
    } finally {
      await unlisten();
    }
  });

  it('settles a batch with one event and one NOTIFY per charge', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const card = await fx.seed.card({ ownerId: fx.holderId, issuerId: fx.merchantId, amount: 1_000, currency: 'USD' });
      ids.push((await authorize(card.id, `batch-${i}`)).charge.id);
    }
    const notices: ChargeEventNotice[] = [];
    const unlisten = await fx.database.listen(chargeEventsChannel, (payload) => notices.push(JSON.parse(payload) as ChargeEventNotice));
    try {
      // Settles every due charge, these five among them (other tests' charges may be due too).
      while ((await settleDueCharges(fx.database.db, { delayMs: 0, batchSize: 100 })) > 0);
      for (const id of ids) {
        const { row, events } = await stored(id);
        expect(row?.status).toBe('SETTLED');
        const settled = events.filter((event) => event.status === 'SETTLED');
        expect(settled).toHaveLength(1);
        expect(settled[0]?.data).toEqual(row && toSnapshot(row));
        expect(settled[0]?.createdAt).toEqual(row?.settledAt);
        await expect
          .poll(() => notices.filter((notice) => notice.chargeId === id))
          .toEqual([{ chargeId: id, status: 'SETTLED', eventId: settled[0]?.id }]);
      }
    } finally {
      await unlisten();
    }
  });

  it.each([
    ['updates it (a re-encryption, a sweep)', 'update cards.cards set pan_key_id = pan_key_id where id = $1'],
    ['only locks it', 'select id from cards.cards where id = $1 for update'],
  ])('never authorizes a card that expired while the charge waited for another transaction that %s', async (_name, lockStatement) => {
    const expiresAt = new Date(Date.now() + 1_000);
    const card = await fx.seed.card({ ownerId: fx.holderId, issuerId: fx.merchantId, amount: 1_000, currency: 'USD', expiresAt });
    const pool = fx.database.pool;
    if (!pool) throw new Error('needs PostgreSQL');
    // Starts while the card is still valid, then waits for the holder until after the expiry.
    const {
      result: { charge },
    } = await whileAnotherTransactionHolds(
      pool,
      [lockStatement],
      [card.id],
      () => authorize(card.id, `expiring-${lockStatement.slice(0, 6)}`),
      () => expiresAt.getTime() - Date.now() + 300,
    );
    expect(charge).toMatchObject({ status: 'DECLINED', declineCode: 'CARD_EXPIRED' });
    const [row] = await fx.database.db.select({ status: cards.status }).from(cards).where(eq(cards.id, card.id));
    expect(row?.status).toBe('ACTIVE');
  });

  it.each([
    ['updates it (a re-encryption, a sweep)', 'update cards.cards set pan_key_id = pan_key_id where id = $1'],
    ['only locks it', 'select id from cards.cards where id = $1 for update'],
  ])(
    'stamps an authorization with the moment it took the card, after waiting for another transaction that %s, so settlement waits its full delay from then',
    async (_name, lockStatement) => {
      const card = await fx.seed.card({ ownerId: fx.holderId, issuerId: fx.merchantId, amount: 1_000, currency: 'USD' });
      const pool = fx.database.pool;
      if (!pool) throw new Error('needs PostgreSQL');
      const {
        result: { charge },
        releasedAt,
      } = await whileAnotherTransactionHolds(
        pool,
        [lockStatement],
        [card.id],
        () => authorize(card.id, `stamp-${lockStatement.slice(0, 6)}`),
        1_000,
      );
      expect(charge.status).toBe('AUTHORIZED');
      // Not the transaction's start, a second before: no earlier than the other writer let go.
      expect(charge.authorizedAt!.getTime()).toBeGreaterThanOrEqual(releasedAt.getTime());
      expect(charge.updatedAt).toEqual(charge.authorizedAt);
      expect(charge.createdAt.getTime()).toBeLessThan(releasedAt.getTime());
      const { row, events, keys } = await stored(charge.id);
      expect(row).toEqual(charge);
      expect(events.map((event) => event.data)).toEqual([toSnapshot(charge)]);
      // The event is stamped with the moment it records, not the transaction's start before the wait.
      expect(events.map((event) => event.createdAt)).toEqual([charge.authorizedAt]);
      expect(keys[0]?.response).toEqual(toSnapshot(charge));
      const [cardRow] = await fx.database.db.select({ usedAt: cards.usedAt }).from(cards).where(eq(cards.id, card.id));
      expect(cardRow?.usedAt).toEqual(charge.authorizedAt);
      // Authorized just now: a settlement delay of 800 ms has not passed (from the transaction's
      // start it had, and the charge settled at once, with no time left to void it).
      await settleDueCharges(fx.database.db, { delayMs: 800, batchSize: 100 });
      expect((await stored(charge.id)).row?.status).toBe('AUTHORIZED');
    },
  );

  it.each([
    [
      'refunds part of it',
      [
        "insert into charges.refunds (id, charge_id, amount, created_by) select 're_' || id, id, 100, merchant_id from charges.charges where id = $1",
        "update charges.charges set refunded_amount = refunded_amount + 100, status = 'PARTIALLY_REFUNDED' where id = $1",
      ],
      300,
    ],
    ['only locks it', ['select id from charges.charges where id = $1 for update'], 200],
  ])(
    'stamps a refund with the moment it held the charge, after waiting for another transaction that %s',
    async (_name, statements, refundedAfter) => {
      const card = await fx.seed.card({ ownerId: fx.holderId, issuerId: fx.merchantId, amount: 1_000, currency: 'USD' });
      const { charge: authorized } = await authorize(card.id, `refund-stamp-auth-${refundedAfter}`);
      const pool = fx.database.pool;
      if (!pool) throw new Error('needs PostgreSQL');
      const key = `refund-stamp-${refundedAfter}`;
      const {
        result: { charge },
        releasedAt,
      } = await whileAnotherTransactionHolds(
        pool,
        statements,
        [authorized.id],
        () => refundCharge({ db: fx.database.db, idempotencyWaitMs: 5_000 }, fx.principal(), authorized.id, 200, key),
        1_000,
      );
      // Decided on the row as the other transaction left it.
      expect(charge).toMatchObject({ status: 'PARTIALLY_REFUNDED', refundedAmount: refundedAfter });
      // Not the transaction's start, a second before: no earlier than the other writer let go.
      expect(charge.updatedAt.getTime()).toBeGreaterThanOrEqual(releasedAt.getTime());
      const [refund] = await fx.database.db
        .select()
        .from(refunds)
        .where(and(eq(refunds.chargeId, authorized.id), eq(refunds.amount, 200)));
      expect(refund?.createdAt).toEqual(charge.updatedAt);
      const [keyRow] = await fx.database.db.select().from(chargeIdempotencyKeys).where(eq(chargeIdempotencyKeys.key, key));
      // The transaction did start before the wait (its claim is stamped with its now()).
      expect(keyRow!.createdAt.getTime()).toBeLessThan(releasedAt.getTime());
      const { row, events } = await stored(charge.id);
      expect(row).toEqual(charge);
      expect(events.at(-1)?.data).toEqual(toSnapshot(charge));
      expect(events.at(-1)?.createdAt).toEqual(charge.updatedAt);
      expect(keyRow?.response).toEqual(toSnapshot(charge));
    },
  );

  it('authorizes and refunds the largest amount the services accept, 2^31 - 1 (migration 0003 caps stored amounts there)', async () => {
    const max = 2_147_483_647;
    const card = await fx.seed.card({ ownerId: fx.holderId, issuerId: fx.merchantId, amount: max, currency: 'USD' });
    const { charge } = await authorizeCharge(
      { db: fx.database.db, idempotencyWaitMs: 5_000 },
      fx.principal(),
      { cardId: card.id, amount: max, currency: 'USD' },
      'at-cap',
    );
    expect(charge).toMatchObject({ status: 'AUTHORIZED', amount: max });
    const [cardRow] = await fx.database.db.select({ status: cards.status, usedAt: cards.usedAt }).from(cards).where(eq(cards.id, card.id));
    expect(cardRow).toEqual({ status: 'USED', usedAt: charge.authorizedAt });
    const deps = { db: fx.database.db, idempotencyWaitMs: 5_000 };
    expect((await refundCharge(deps, fx.principal(), charge.id, max - 1, 'at-cap-part')).charge).toMatchObject({
      status: 'PARTIALLY_REFUNDED',
      refundedAmount: max - 1,
    });
    expect((await refundCharge(deps, fx.principal(), charge.id, null, 'at-cap-rest')).charge).toMatchObject({
      status: 'REFUNDED',
      refundedAmount: max,
    });
    expect((await stored(charge.id)).row).toMatchObject({ amount: max, refundedAmount: max });
  });

  it('fails with SERVICE_UNAVAILABLE when another writer holds the card past the wait bound, writes nothing, and the same key works after', async () => {
    const card = await fx.seed.card({ ownerId: fx.holderId, issuerId: fx.merchantId, amount: 1_000, currency: 'USD' });
    const pool = fx.database.pool;
    if (!pool) throw new Error('needs PostgreSQL');
    const holder = await pool.connect();
    try {
      await holder.query('begin');
      await holder.query('select id from cards.cards where id = $1 for update', [card.id]);
      // Refused while the lock is still held (it is released only below): the 300 ms bound fired,
      // or this would wait for the holder forever.
      await expect(authorize(card.id, 'held', 300)).rejects.toMatchObject({ extensions: { code: 'SERVICE_UNAVAILABLE' } });
      expect(await fx.database.db.select().from(charges).where(eq(charges.cardId, card.id))).toEqual([]);
      expect(await fx.database.db.select().from(chargeIdempotencyKeys).where(eq(chargeIdempotencyKeys.key, 'held'))).toEqual([]);
      await holder.query('rollback');
    } finally {
      holder.release();
    }
    expect((await authorize(card.id, 'held', 300)).charge.status).toBe('AUTHORIZED');
  });
});
