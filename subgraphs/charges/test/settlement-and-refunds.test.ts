import { chargeEvents, charges, createDatabase, refunds } from '@ghostpay/db';
import { poolStatementsOf, type SeededUser } from '@ghostpay/test-support';
import { and, eq, inArray } from 'drizzle-orm';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { settleAllDue } from '../src/index.ts';
import {
  type ChargeJson,
  chargeFields,
  createChargeMutation,
  type Harness,
  refundChargeMutation,
  startHarness,
} from './charges-harness.ts';

let h: Harness;
let merchant: SeededUser;
let otherMerchant: SeededUser;
let holder: SeededUser;
let bearer: string;

beforeAll(async () => {
  h = await startHarness();
  merchant = await h.seed.user('merchant');
  otherMerchant = await h.seed.user('merchant');
  holder = await h.seed.user('user');
  bearer = await h.tokens.bearer({ userId: merchant.id, role: 'merchant' });
});
afterAll(async () => h?.close());
afterEach(async () => h.expectLedgerClean());

let keyCounter = 0;
async function authorized(amount = 1_000): Promise<ChargeJson> {
  const card = await h.seed.card({ ownerId: holder.id, issuerId: merchant.id, amount, currency: 'USD' });
  const result = await h.gql<{ createCharge: ChargeJson }>(
    createChargeMutation,
    { input: { cardId: card.id, amount, currency: 'USD' }, key: `setup-${++keyCounter}` },
    bearer,
  );
  if (!result.data) throw new Error(JSON.stringify(result.errors));
  return result.data.createCharge;
}

function refund(id: string, amount: number | null, key: string, as = bearer) {
  return h.gql<{ refundCharge: ChargeJson }>(refundChargeMutation, { id, amount, key }, as);
}

describe('settlement', () => {
  it('leaves charges AUTHORIZED until the delay has passed', async () => {
    const charge = await authorized();
    expect(await settleAllDue(h.database.db, { delayMs: 60_000, batchSize: 10 })).toBe(0);
    const [row] = await h.database.db.select().from(charges).where(eq(charges.id, charge.id));
    expect(row?.status).toBe('AUTHORIZED');
  });

  it('never settles a charge twice with two workers on separate connection pools', async () => {
    const created = await Promise.all(Array.from({ length: 60 }, () => authorized()));
    const ids = created.map((c) => c.id);
    const second = await createDatabase({ url: h.database.url, poolSize: 4 });
    try {
      const worker = async (db: typeof h.database.db) => {
        let total = 0;
        for (let round = 0; round < 20; round++) total += await settleAllDue(db, { delayMs: 0, batchSize: 5, maxBatches: 2 });
        return total;
      };
      const [a, b] = await Promise.all([worker(h.database.db), worker(second.db)]);
      expect(a + b).toBeGreaterThanOrEqual(60);
    } finally {
      await second.close();
    }
    const rows = await h.database.db.select().from(charges).where(inArray(charges.id, ids));
    expect(rows.every((row) => row.status === 'SETTLED' && row.settledAt)).toBe(true);
    const settledEvents = await h.database.db
      .select()
      .from(chargeEvents)
      .where(and(inArray(chargeEvents.chargeId, ids), eq(chargeEvents.status, 'SETTLED')));
    expect(settledEvents).toHaveLength(60);
    expect(new Set(settledEvents.map((e) => e.chargeId)).size).toBe(60);
  });

  it('settles through the service worker once started, and stops cleanly', async () => {
    const charge = await authorized();
    const worker = h.service.settlement;
    await h.database.db
      .update(charges)
      .set({ authorizedAt: new Date(Date.now() - 60_000) })
      .where(eq(charges.id, charge.id));
    const settled = await worker.runOnce();
    expect(settled).toBeGreaterThanOrEqual(1);
    const [row] = await h.database.db.select().from(charges).where(eq(charges.id, charge.id));
    expect(row?.status).toBe('SETTLED');
    worker.start();
    expect(worker.running).toBe(true);
    await worker.stop();
    expect(worker.running).toBe(false);
  });
});

describe('refundCharge', () => {
  it('refunds part, then the rest, moving PARTIALLY_REFUNDED → REFUNDED', async () => {
    const charge = await authorized(1_000);
    const partial = await refund(charge.id, 300, 'r-part');
    expect(partial.data?.refundCharge).toMatchObject({ status: 'PARTIALLY_REFUNDED', refundedAmount: 300 });
    const rest = await refund(charge.id, null, 'r-rest');
    expect(rest.data?.refundCharge).toMatchObject({ status: 'REFUNDED', refundedAmount: 1_000 });
    const rows = await h.database.db.select().from(refunds).where(eq(refunds.chargeId, charge.id));
    expect(rows.map((r) => r.amount).sort()).toEqual([300, 700]);
  });

  it('never refunds more than the amount under concurrent partial refunds', async () => {
    const charge = await authorized(1_000);
    const results = await Promise.all(Array.from({ length: 30 }, (_, i) => refund(charge.id, 100, `r-conc-${i}`)));
    const ok = results.filter((r) => r.data?.refundCharge);
    const rejected = results.filter((r) => r.errors);
    expect(ok).toHaveLength(10);
    expect(rejected).toHaveLength(20);
    expect(new Set(rejected.map((r) => r.errors?.[0]?.extensions?.code))).toEqual(new Set(['BAD_USER_INPUT']));
    const [row] = await h.database.db.select().from(charges).where(eq(charges.id, charge.id));
    expect(row).toMatchObject({ refundedAmount: 1_000, status: 'REFUNDED' });
  });

  it('rejects an over-refund with BAD_USER_INPUT and changes nothing', async () => {
    const charge = await authorized(1_000);
    await refund(charge.id, 600, 'r-over-1');
    const over = await refund(charge.id, 401, 'r-over-2');
    expect(over.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    const [row] = await h.database.db.select().from(charges).where(eq(charges.id, charge.id));
    expect(row).toMatchObject({ refundedAmount: 600, status: 'PARTIALLY_REFUNDED' });
  });

  it('rejects refunding a declined charge with BAD_USER_INPUT', async () => {
    const card = await h.seed.card({ ownerId: holder.id, issuerId: merchant.id, status: 'CANCELED' });
    const declined = await h.gql<{ createCharge: ChargeJson }>(
      createChargeMutation,
      { input: { cardId: card.id, amount: 100, currency: 'USD' }, key: 'r-declined-setup' },
      bearer,
    );
    expect(declined.data?.createCharge.status).toBe('DECLINED');
    const result = await refund(declined.data?.createCharge.id ?? '', null, 'r-declined');
    expect(result.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
  });

  it('replays a refund for the same key and refuses the key with a different amount', async () => {
    const charge = await authorized(1_000);
    const first = await refund(charge.id, 250, 'r-idem');
    const again = await refund(charge.id, 250, 'r-idem');
    expect(again.data?.refundCharge).toEqual(first.data?.refundCharge);
    const mismatch = await refund(charge.id, 300, 'r-idem');
    expect(mismatch.errors?.[0]?.extensions?.code).toBe('IDEMPOTENCY_KEY_REUSED');
    const rows = await h.database.db.select().from(refunds).where(eq(refunds.chargeId, charge.id));
    expect(rows).toHaveLength(1);
  });

  it("answers NOT_FOUND for another merchant's charge", async () => {
    const charge = await authorized();
    const result = await refund(charge.id, 10, 'r-foreign', await h.tokens.bearer({ userId: otherMerchant.id, role: 'merchant' }));
    expect(result.errors?.[0]?.extensions?.code).toBe('NOT_FOUND');
  });

  it('settles the remainder of an authorization partially refunded before settlement', async () => {
    const charge = await authorized(1_000);
    await refund(charge.id, 100, 'r-before-settle');
    await settleAllDue(h.database.db, { delayMs: 0, batchSize: 100 });
    const [row] = await h.database.db.select().from(charges).where(eq(charges.id, charge.id));
    expect(row?.status).toBe('PARTIALLY_REFUNDED');
    expect(row?.settledAt).toBeInstanceOf(Date);
  });
});

describe('queries', () => {
  const chargeQuery = `query ($id: ID!) { charge(id: $id) { ${chargeFields} } }`;

  it('shows a charge to its merchant and card holder, and NOT_FOUND to another merchant', async () => {
    const charge = await authorized();
    const asMerchant = await h.gql<{ charge: ChargeJson }>(chargeQuery, { id: charge.id }, bearer);
    expect(asMerchant.data?.charge.id).toBe(charge.id);
    const asHolder = await h.gql<{ charge: ChargeJson }>(
      chargeQuery,
      { id: charge.id },
      await h.tokens.bearer({ userId: holder.id, role: 'user' }),
    );
    expect(asHolder.data?.charge.id).toBe(charge.id);
    const asOther = await h.gql(chargeQuery, { id: charge.id }, await h.tokens.bearer({ userId: otherMerchant.id, role: 'merchant' }));
    expect(asOther.errors?.[0]?.extensions?.code).toBe('NOT_FOUND');
  });

  it('pages through charges newest first with an opaque cursor', async () => {
    const pager = await h.seed.user('merchant');
    const pagerBearer = await h.tokens.bearer({ userId: pager.id, role: 'merchant' });
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const card = await h.seed.card({ ownerId: holder.id, issuerId: pager.id });
      const r = await h.gql<{ createCharge: ChargeJson }>(
        createChargeMutation,
        { input: { cardId: card.id, amount: 100, currency: 'USD' }, key: `page-${i}` },
        pagerBearer,
      );
      ids.push(r.data?.createCharge.id ?? '');
    }
    const list = `query ($first: Int, $after: String) { charges(first: $first, after: $after) { nodes { id } pageInfo { hasNextPage endCursor } } }`;
    type Page = { charges: { nodes: Array<{ id: string }>; pageInfo: { hasNextPage: boolean; endCursor: string | null } } };
    const seen: string[] = [];
    let after: string | null = null;
    for (let page = 0; page < 5; page++) {
      const result: Awaited<ReturnType<typeof h.gql<Page>>> = await h.gql<Page>(list, { first: 2, after }, pagerBearer);
      seen.push(...(result.data?.charges.nodes.map((n) => n.id) ?? []));
      if (!result.data?.charges.pageInfo.hasNextPage) break;
      after = result.data.charges.pageInfo.endCursor;
    }
    expect(seen).toEqual([...ids].reverse());
    const bad = await h.gql(list, { first: 2, after: 'garbage' }, pagerBearer);
    expect(bad.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
  });

  it('resolves Charge and Card.charges references in one statement per batch, one text for every batch size, visible charges only', async () => {
    const [a, b, c] = [await authorized(), await authorized(), await authorized()];
    const admin = await h.tokens.bearer({ userId: (await h.seed.user('admin')).id, role: 'admin' });
    const other = await h.tokens.bearer({ userId: otherMerchant.id, role: 'merchant' });
    const chargeEntities = `query ($reps: [_Any!]!) { _entities(representations: $reps) { ... on Charge { id } } }`;
    const resolve = (ids: string[], as: string) =>
      poolStatementsOf(h.database.pool!, () =>
        h.gql<{ _entities: ({ id: string } | null)[] }>(chargeEntities, { reps: ids.map((id) => ({ __typename: 'Charge', id })) }, as),
      );
    const three = await resolve([a.id, 'ch_unknown', c.id], bearer);
    expect(three.result.data?._entities).toEqual([{ id: a.id }, null, { id: c.id }]);
    expect(three.statements).toHaveLength(1);
    expect(three.statements[0]).toMatch(/"charges"\."charges"\."id" = any\(\$1::text\[\]\)/);
    expect(three.statements[0]).toMatch(/"charges"\."charges"\."merchant_id" = \$2/);
    const two = await resolve([b.id, a.id], bearer);
    expect(two.result.data?._entities).toEqual([{ id: b.id }, { id: a.id }]);
    expect(two.statements).toEqual(three.statements);
    const one = await resolve([b.id], bearer);
    expect(one.result.data?._entities).toEqual([{ id: b.id }]);
    expect(one.statements).toHaveLength(1);
    expect(one.statements[0]).toMatch(/"charges"\."charges"\."id" = \$1 /);
    // The caller's id is a parameter of the same statement: another merchant sees none of them.
    const hidden = await resolve([a.id, b.id, c.id], other);
    expect(hidden.result.data?._entities).toEqual([null, null, null]);
    expect(hidden.statements).toEqual(three.statements);
    // Admins' statement has no visibility condition.
    const asAdmin = await resolve([c.id, a.id], admin);
    expect(asAdmin.result.data?._entities).toEqual([{ id: c.id }, { id: a.id }]);
    expect(asAdmin.statements).toHaveLength(1);
    expect(asAdmin.statements[0]).not.toMatch(/merchant_id" =/);

    const cardEntities = `query ($reps: [_Any!]!) { _entities(representations: $reps) { ... on Card { id charges { id } } } }`;
    const cardsOf = (ids: string[], as: string) =>
      poolStatementsOf(h.database.pool!, () =>
        h.gql<{ _entities: { id: string; charges: { id: string }[] }[] }>(
          cardEntities,
          { reps: ids.map((id) => ({ __typename: 'Card', id })) },
          as,
        ),
      );
    const byCard = await cardsOf([c.card.id, a.card.id], bearer);
    expect(byCard.result.data?._entities.map((card) => card.charges.map((charge) => charge.id))).toEqual([[c.id], [a.id]]);
    expect(byCard.statements).toHaveLength(1);
    expect(byCard.statements[0]).toMatch(/"charges"\."charges"\."card_id" = any\(\$1::text\[\]\)/);
    const byCardHidden = await cardsOf([c.card.id, a.card.id], other);
    expect(byCardHidden.result.data?._entities.map((card) => card.charges)).toEqual([[], []]);
    expect(byCardHidden.statements).toEqual(byCard.statements);
  });

  it('contributes Card.charges through _entities, visible charges only', async () => {
    const charge = await authorized();
    const entities = `query ($reps: [_Any!]!) { _entities(representations: $reps) { ... on Card { id charges { id status } } } }`;
    const mine = await h.gql<{ _entities: Array<{ charges: Array<{ id: string }> }> }>(
      entities,
      { reps: [{ __typename: 'Card', id: charge.card.id }] },
      bearer,
    );
    expect(mine.data?._entities[0]?.charges.map((c) => c.id)).toEqual([charge.id]);
    const other = await h.gql<{ _entities: Array<{ charges: unknown[] }> }>(
      entities,
      { reps: [{ __typename: 'Card', id: charge.card.id }] },
      await h.tokens.bearer({ userId: otherMerchant.id, role: 'merchant' }),
    );
    expect(other.data?._entities[0]?.charges).toEqual([]);
  });
});
