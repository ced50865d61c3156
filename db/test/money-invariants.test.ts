import { cards, chargeEvents, chargeIdempotencyKeys, charges, maxAmountMinorUnits, newId, refunds, revealAudit } from '@ghostpay/db';
import { createSeed, freshDatabase, type SeededUser, type TestDatabase } from '@ghostpay/test-support';
import { eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * The money invariants of migration 0002, on the throwaway PostgreSQL cluster (PGlite where there
 * is none): rows shaped as the services write them are accepted, and rows no service may write
 * are refused by the database itself, whatever code writes them.
 */
let database: TestDatabase;
let seed: ReturnType<typeof createSeed>;
let merchant: SeededUser;
let otherMerchant: SeededUser;
let admin: SeededUser;
let holder: SeededUser;

beforeAll(async () => {
  database = await freshDatabase({ poolSize: 2 });
  seed = createSeed(database.db);
  [merchant, otherMerchant, admin, holder] = [
    await seed.user('merchant'),
    await seed.user('merchant'),
    await seed.user('admin'),
    await seed.user('user'),
  ];
});
afterAll(async () => database?.close());

type ChargeInsert = typeof charges.$inferInsert;

/**
 * A card of `merchant` (10,000 USD unless told), ACTIVE, or USED the way an authorization leaves
 * it (test-support's seed stamps a USED card's `used_at`).
 */
function newCard(status: 'ACTIVE' | 'USED', amount = 10_000) {
  return seed.card({ ownerId: holder.id, issuerId: merchant.id, amount, status });
}

/** A card of `merchant` (USED unless told, 10,000 USD) and a charge on it, AUTHORIZED for 100 unless overridden. */
async function chargeOnNewCard(overrides: Partial<ChargeInsert> = {}, card: { status?: 'ACTIVE' | 'USED' } = {}) {
  const issued = await newCard(card.status ?? 'USED');
  const row: ChargeInsert = {
    id: newId('ch'),
    cardId: issued.id,
    merchantId: merchant.id,
    amount: 100,
    currency: 'USD',
    status: 'AUTHORIZED',
    authorizedAt: new Date(),
    ...overrides,
  };
  return { card: issued, row, insert: () => database.db.insert(charges).values(row) };
}

/** 'accepted', or the name of the constraint that refused the write. */
const outcome = (write: PromiseLike<unknown>) =>
  Promise.resolve(write).then(
    () => 'accepted',
    (error: Error & { cause?: { constraint?: string; code?: string } }) => {
      const cause = (error.cause ?? error) as { constraint?: string; code?: string; message?: string };
      return cause.code === '23514' ? cause.constraint : `${cause.code}: ${cause.message}`;
    },
  );

describe('money invariants enforced by the database', () => {
  it('accepts what the services write: an authorization taking its card in the same statement, a decline, refunds, a settlement, an admin charge', async () => {
    const { db } = database;
    // The authorization's shape: the card goes ACTIVE → USED and the charge is inserted by one statement.
    const card = await seed.card({ ownerId: holder.id, issuerId: merchant.id, amount: 500, currency: 'EUR' });
    const chargeId = newId('ch');
    await db.execute(sql`
      with taken as (
        update cards.cards set status = 'USED', used_at = now() where id = ${card.id} and status = 'ACTIVE' returning id
      )
      insert into charges.charges (id, card_id, merchant_id, amount, currency, status, authorized_at)
      select ${chargeId}, taken.id, ${merchant.id}, 500, 'EUR', 'AUTHORIZED', now() from taken`);
    // A decline on that (now used) card, in another currency and above its amount.
    await db.insert(charges).values({
      id: newId('ch'),
      cardId: card.id,
      merchantId: merchant.id,
      amount: 9_999,
      currency: 'USD',
      status: 'DECLINED',
      declineCode: 'CARD_ALREADY_USED',
    });
    // A partial refund, then the rest: the charge and its refund row in one transaction, in either order.
    await db.transaction(async (tx) => {
      await tx.update(charges).set({ refundedAmount: 200, status: 'PARTIALLY_REFUNDED' }).where(eq(charges.id, chargeId));
      await tx.insert(refunds).values({ id: newId('re'), chargeId, amount: 200, createdBy: merchant.id });
    });
    await db.transaction(async (tx) => {
      await tx.insert(refunds).values({ id: newId('re'), chargeId, amount: 300, createdBy: merchant.id });
      await tx.update(charges).set({ refundedAmount: 500, status: 'REFUNDED' }).where(eq(charges.id, chargeId));
    });
    await db.insert(chargeEvents).values({ chargeId, status: 'REFUNDED' });
    // A settlement.
    const settling = await chargeOnNewCard();
    await settling.insert();
    await db.update(charges).set({ status: 'SETTLED', settledAt: sql`now()` }).where(eq(charges.id, settling.row.id));
    // An admin charges a card another merchant issued.
    const byAdmin = await chargeOnNewCard({ merchantId: admin.id });
    expect(await outcome(byAdmin.insert())).toBe('accepted');
    await db
      .insert(chargeIdempotencyKeys)
      .values({ principalId: admin.id, key: 'k1', operation: 'create_charge', fingerprint: 'f', state: 'in_progress' });
  });

  it('refuses a charge row whose status, amounts, decline code or times contradict each other', async () => {
    const hourAgo = new Date(Date.now() - 3_600_000);
    const cases: [string, Partial<ChargeInsert>, string][] = [
      [
        'an unknown decline code',
        { status: 'DECLINED', declineCode: 'INSUFFICIENT_FUNDS' as never, authorizedAt: null },
        'charges_decline_code_values',
      ],
      ['AUTHORIZED yet refunded', { refundedAmount: 10 }, 'charges_refunded_matches_status'],
      ['SETTLED yet refunded', { status: 'SETTLED', settledAt: new Date(), refundedAmount: 100 }, 'charges_refunded_matches_status'],
      ['REFUNDED in part only', { status: 'REFUNDED', refundedAmount: 40 }, 'charges_refunded_matches_status'],
      ['PARTIALLY_REFUNDED in full', { status: 'PARTIALLY_REFUNDED', refundedAmount: 100 }, 'charges_refunded_matches_status'],
      ['PARTIALLY_REFUNDED by nothing', { status: 'PARTIALLY_REFUNDED', refundedAmount: 0 }, 'charges_refunded_matches_status'],
      ['a decline with an authorization time', { status: 'DECLINED', declineCode: 'CARD_EXPIRED' }, 'charges_times_match_status'],
      ['AUTHORIZED without an authorization time', { authorizedAt: null }, 'charges_times_match_status'],
      ['SETTLED without a settlement time', { status: 'SETTLED' }, 'charges_times_match_status'],
      ['AUTHORIZED with a settlement time', { settledAt: new Date() }, 'charges_times_match_status'],
      [
        'settled before it was authorized',
        { status: 'SETTLED', authorizedAt: new Date(), settledAt: hourAgo },
        'charges_times_match_status',
      ],
    ];
    const outcomes: Record<string, string | undefined> = {};
    for (const [what, overrides] of cases) outcomes[what] = await outcome((await chargeOnNewCard(overrides)).insert());
    expect(outcomes).toEqual(Object.fromEntries(cases.map(([what, , constraint]) => [what, constraint])));
  });

  it('refuses a charge that disagrees with its card: another currency, above its amount, a card not USED, a merchant who did not issue it', async () => {
    const cases: [string, () => ReturnType<typeof chargeOnNewCard>][] = [
      ['in another currency than the card', () => chargeOnNewCard({ currency: 'EUR' })],
      ['above the card amount', () => chargeOnNewCard({ amount: 10_001 })],
      ['on an ACTIVE card', () => chargeOnNewCard({}, { status: 'ACTIVE' })],
      ["on another merchant's card", () => chargeOnNewCard({ merchantId: otherMerchant.id })],
      [
        "declined, on another merchant's card",
        () => chargeOnNewCard({ merchantId: otherMerchant.id, status: 'DECLINED', declineCode: 'CARD_ALREADY_USED', authorizedAt: null }),
      ],
    ];
    const outcomes: Record<string, string | undefined> = {};
    for (const [what, written] of cases) outcomes[what] = await outcome((await written()).insert());
    expect(outcomes).toEqual(Object.fromEntries(cases.map(([what]) => [what, 'charges_match_card'])));

    // Changed afterwards, too.
    const written = await chargeOnNewCard();
    await written.insert();
    const update = (set: Partial<ChargeInsert>) => database.db.update(charges).set(set).where(eq(charges.id, written.row.id));
    expect(await outcome(update({ amount: 10_001 }))).toBe('charges_match_card');
    expect(await outcome(update({ currency: 'GBP' }))).toBe('charges_match_card');
    expect(await outcome(update({ merchantId: otherMerchant.id }))).toBe('charges_match_card');
    // A decline turned into a success on a card that is not USED.
    const declined = await chargeOnNewCard({ status: 'DECLINED', declineCode: 'CARD_CANCELED', authorizedAt: null }, { status: 'ACTIVE' });
    expect(await outcome(declined.insert())).toBe('accepted');
    expect(
      await outcome(
        database.db
          .update(charges)
          .set({ status: 'AUTHORIZED', declineCode: null, authorizedAt: new Date() })
          .where(eq(charges.id, declined.row.id)),
      ),
    ).toBe('charges_match_card');
  });

  it('refuses refunds that do not add up to the charge’s refunded amount, so refunds never exceed the charge', async () => {
    const { db } = database;
    const { row, insert } = await chargeOnNewCard();
    await insert();
    const refund = (amount: number) => ({ id: newId('re'), chargeId: row.id, amount, createdBy: merchant.id });
    // A refund row paid out with the charge left as it was.
    expect(await outcome(db.insert(refunds).values(refund(40)))).toBe('refunds_match_charge');
    // The charge marked refunded with no refund row.
    expect(await outcome(db.update(charges).set({ refundedAmount: 40, status: 'PARTIALLY_REFUNDED' }).where(eq(charges.id, row.id)))).toBe(
      'refunds_match_charge',
    );
    // Refunded in full, then one more refund row on top of it.
    await db.transaction(async (tx) => {
      await tx.update(charges).set({ refundedAmount: 100, status: 'REFUNDED' }).where(eq(charges.id, row.id));
      await tx.insert(refunds).values(refund(100));
    });
    expect(await outcome(db.insert(refunds).values(refund(1)))).toBe('refunds_match_charge');
    expect(await outcome(db.update(refunds).set({ amount: 101 }).where(eq(refunds.chargeId, row.id)))).toBe('refunds_match_charge');
    expect(await outcome(db.delete(refunds).where(eq(refunds.chargeId, row.id)))).toBe('refunds_match_charge');
    const [total] = await db
      .select({ refunded: sql<number>`sum(${refunds.amount})::int` })
      .from(refunds)
      .where(eq(refunds.chargeId, row.id));
    expect(total?.refunded).toBe(100);
  });

  it('refuses an event or an idempotency key outside their closed lists', async () => {
    const { row, insert } = await chargeOnNewCard();
    await insert();
    expect(await outcome(database.db.insert(chargeEvents).values({ chargeId: row.id, status: 'PAID' as never }))).toBe(
      'charge_events_status_check',
    );
    const key = { principalId: merchant.id, key: 'k2', operation: 'create_charge', fingerprint: 'f', state: 'completed' } as const;
    expect(await outcome(database.db.insert(chargeIdempotencyKeys).values({ ...key, operation: 'capture_charge' as never }))).toBe(
      'charge_idempotency_operation_check',
    );
    expect(await outcome(database.db.insert(chargeIdempotencyKeys).values({ ...key, state: 'done' as never }))).toBe(
      'charge_idempotency_state_check',
    );
  });
});

describe('invariants of migration 0003 enforced by the database', () => {
  it('holds every amount to the services’ cap (2^31 - 1): cards, charges, refunded amounts, refunds', async () => {
    const { db } = database;
    expect(maxAmountMinorUnits).toBe(2 ** 31 - 1);
    // The cap itself, as the services may write it: a card of CARD_MAX_AMOUNT's ceiling, charged
    // and refunded in full.
    const atCap = await newCard('USED', maxAmountMinorUnits);
    const chargeId = newId('ch');
    const charge = { id: chargeId, cardId: atCap.id, merchantId: merchant.id, amount: maxAmountMinorUnits, currency: 'USD' };
    expect(await outcome(db.insert(charges).values({ ...charge, status: 'AUTHORIZED', authorizedAt: new Date() }))).toBe('accepted');
    expect(
      await outcome(
        db.transaction(async (tx) => {
          await tx.update(charges).set({ refundedAmount: maxAmountMinorUnits, status: 'REFUNDED' }).where(eq(charges.id, chargeId));
          await tx.insert(refunds).values({ id: newId('re'), chargeId, amount: maxAmountMinorUnits, createdBy: merchant.id });
        }),
      ),
    ).toBe('accepted');

    // One more, on insert and on update; 2^53 + 1 would be read back as 2^53.
    const above = maxAmountMinorUnits + 1;
    const card = (amount: number) => seed.card({ ownerId: holder.id, issuerId: merchant.id, amount });
    expect(await outcome(card(above))).toBe('cards_amount_max');
    expect(await outcome(card(2 ** 53 + 1))).toBe('cards_amount_max');
    expect(await outcome(db.update(cards).set({ amount: above }).where(eq(cards.id, atCap.id)))).toBe('cards_amount_max');
    // A charge above the cap on a card with no cap (as on a database where cards_amount_max is
    // still NOT VALID and an old card is that large): the charge's own check refuses it.
    await db.execute(sql`alter table cards.cards drop constraint cards_amount_max`);
    try {
      const huge = await newCard('USED', 2 ** 40);
      const onHuge = { id: newId('ch'), cardId: huge.id, merchantId: merchant.id, currency: 'USD', status: 'AUTHORIZED' as const };
      expect(await outcome(db.insert(charges).values({ ...onHuge, amount: above, authorizedAt: new Date() }))).toBe('charges_amount_max');
      expect(await outcome(db.update(charges).set({ amount: above }).where(eq(charges.id, chargeId)))).toBe('charges_amount_max');
      // A refunded amount above the cap (charges_refund_bounds would refuse it too; both checks run).
      expect(await outcome(db.update(charges).set({ refundedAmount: above, amount: above }).where(eq(charges.id, chargeId)))).toBe(
        'charges_amount_max',
      );
      // A refund row above the cap.
      expect(await outcome(db.insert(refunds).values({ id: newId('re'), chargeId, amount: above, createdBy: merchant.id }))).toBe(
        'refunds_amount_max',
      );
    } finally {
      await db.execute(sql`alter table cards.cards add constraint cards_amount_max check (amount <= 2147483647) not valid`);
      await db.execute(sql`delete from charges.charges where card_id in (select id from cards.cards where amount > 2147483647)`);
      await db.execute(sql`delete from cards.cards where amount > 2147483647`);
      await db.execute(sql`alter table cards.cards validate constraint cards_amount_max`);
    }
  });

  it('keeps a card USED exactly when it has used_at: as an authorization takes it, never otherwise', async () => {
    const { db } = database;
    // The authorization's shape: ACTIVE → USED and used_at in one update.
    const taken = await newCard('ACTIVE');
    expect(
      await outcome(
        db.execute(sql`update cards.cards set status = 'USED', used_at = clock_timestamp() where id = ${taken.id} and status = 'ACTIVE'`),
      ),
    ).toBe('accepted');
    // Cancel and the expiry sweep, from ACTIVE (used_at stays null).
    const canceled = await newCard('ACTIVE');
    expect(await outcome(db.update(cards).set({ status: 'CANCELED', canceledAt: new Date() }).where(eq(cards.id, canceled.id)))).toBe(
      'accepted',
    );
    const swept = await newCard('ACTIVE');
    expect(await outcome(db.update(cards).set({ status: 'EXPIRED' }).where(eq(cards.id, swept.id)))).toBe('accepted');

    const base = { ownerId: holder.id, issuerId: merchant.id };
    // USED without used_at: inserted so, or updated so.
    expect(await outcome(seed.card({ ...base, status: 'USED', usedAt: null }))).toBe('cards_used_at_matches_status');
    expect(await outcome(seed.card({ ...base, status: 'USED' }))).toBe('accepted');
    const active = await newCard('ACTIVE');
    expect(await outcome(db.update(cards).set({ status: 'USED' }).where(eq(cards.id, active.id)))).toBe('cards_used_at_matches_status');
    expect(await outcome(db.update(cards).set({ usedAt: null }).where(eq(cards.id, taken.id)))).toBe('cards_used_at_matches_status');
    // used_at on a card that is not USED: ACTIVE, or a used card moved to another status.
    expect(await outcome(db.update(cards).set({ usedAt: new Date() }).where(eq(cards.id, active.id)))).toBe('cards_used_at_matches_status');
    for (const status of ['ACTIVE', 'EXPIRED', 'CANCELED'] as const) {
      expect(await outcome(db.update(cards).set({ status }).where(eq(cards.id, taken.id))), status).toBe('cards_used_at_matches_status');
    }
  });

  it('keeps the reveal audit’s actor role to the platform’s roles', async () => {
    const card = await newCard('ACTIVE');
    const audit = (actorRole: string) =>
      database.db.insert(revealAudit).values({ id: newId('rev'), cardId: card.id, actorId: holder.id, actorRole, requestId: null });
    for (const role of ['user', 'merchant', 'admin']) expect(await outcome(audit(role)), role).toBe('accepted');
    for (const role of ['support', 'Admin', '']) expect(await outcome(audit(role)), role).toBe('reveal_audit_actor_role_check');
  });

  it('keeps the PAN of every ACTIVE card; only a card that left ACTIVE may have it erased (0004)', async () => {
    const { db } = database;
    const base = { ownerId: holder.id, issuerId: merchant.id };
    // Inserted ACTIVE without a PAN, or an ACTIVE card's PAN erased.
    const withoutPan = {
      ...base,
      id: newId('card'),
      panCiphertext: null,
      panKeyId: 'k',
      panFingerprint: newId('card'),
      bin: '400000',
      last4: '4242',
    };
    const card = {
      ...withoutPan,
      brand: 'VISA',
      expMonth: 1,
      expYear: 2099,
      expiresAt: new Date('2099-01-31T00:00:00Z'),
      amount: 100,
      currency: 'USD',
    };
    expect(await outcome(db.insert(cards).values({ ...card, status: 'ACTIVE' }))).toBe('cards_active_has_pan');
    const active = await newCard('ACTIVE');
    expect(await outcome(db.update(cards).set({ panCiphertext: null }).where(eq(cards.id, active.id)))).toBe('cards_active_has_pan');
    // The retention's write: a used, canceled or expired card loses its PAN.
    const used = await newCard('USED');
    expect(await outcome(db.update(cards).set({ panCiphertext: null }).where(eq(cards.id, used.id)))).toBe('accepted');
    for (const status of ['CANCELED', 'EXPIRED'] as const) {
      const ended = await newCard('ACTIVE');
      expect(await outcome(db.update(cards).set({ status }).where(eq(cards.id, ended.id))), status).toBe('accepted');
      expect(await outcome(db.update(cards).set({ panCiphertext: null }).where(eq(cards.id, ended.id))), status).toBe('accepted');
      // An erased card never comes back ACTIVE.
      expect(await outcome(db.update(cards).set({ status: 'ACTIVE' }).where(eq(cards.id, ended.id))), status).toBe('cards_active_has_pan');
    }
  });

  it('keeps the reveal audit’s outcome to a reveal or a refusal the service writes (0004)', async () => {
    const card = await newCard('ACTIVE');
    const audit = (outcome: string) =>
      database.db.insert(revealAudit).values({
        id: newId('rev'),
        cardId: card.id,
        actorId: holder.id,
        actorRole: 'user',
        requestId: null,
        outcome: outcome as 'REVEALED',
      });
    for (const value of ['REVEALED', 'FORBIDDEN', 'NOT_ACTIVE']) expect(await outcome(audit(value)), value).toBe('accepted');
    for (const value of ['NOT_FOUND', 'revealed', '']) expect(await outcome(audit(value)), value).toBe('reveal_audit_outcome_check');
    // A row written as before 0004 (no outcome) is a reveal.
    const id = newId('rev');
    await database.db.insert(revealAudit).values({ id, cardId: card.id, actorId: holder.id, actorRole: 'user', requestId: null });
    expect((await database.db.select({ o: revealAudit.outcome }).from(revealAudit).where(eq(revealAudit.id, id)))[0]?.o).toBe('REVEALED');
  });
});
