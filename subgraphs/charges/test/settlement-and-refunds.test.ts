import { awaitingSettlement, chargeEvents, chargeIdempotencyKeys, charges, createDatabase, refunds } from '@ghostpay/db';
import { connectionStatementsOf, poolStatementsOf, type SeededUser } from '@ghostpay/test-support';
import { and, count, eq, inArray } from 'drizzle-orm';
import type pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { settleAllDue, settleDueCharges } from '../src/index.ts';
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
    // Due with no delay: these 60 and whatever earlier tests left awaiting settlement.
    const awaiting = async () => (await h.database.db.select({ n: count() }).from(charges).where(awaitingSettlement(charges)))[0]?.n;
    const due = await awaiting();
    expect(due).toBeGreaterThanOrEqual(60);
    const second = await createDatabase({ url: h.database.url, poolSize: 4 });
    try {
      const worker = async (db: typeof h.database.db) => {
        let total = 0;
        for (let round = 0; round < 20; round++) total += await settleAllDue(db, { delayMs: 0, batchSize: 5, maxBatches: 2 });
        return total;
      };
      const [a, b] = await Promise.all([worker(h.database.db), worker(second.db)]);
      // Between them the workers settled every due charge exactly once.
      expect(a + b).toBe(due);
      expect(await awaiting()).toBe(0);
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

  it('sends the same statement texts for a batch of two and a batch of one (one prepared statement each per connection)', async () => {
    await settleAllDue(h.database.db, { delayMs: 0, batchSize: 100 });
    await Promise.all([authorized(), authorized(), authorized()]);
    const pool = h.database.pool as pg.Pool;
    let settled = 0;
    const two = await connectionStatementsOf(pool, async () => {
      settled = await settleDueCharges(h.database.db, { delayMs: 0, batchSize: 2 });
    });
    expect(settled).toBe(2);
    const one = await connectionStatementsOf(pool, async () => {
      settled = await settleDueCharges(h.database.db, { delayMs: 0, batchSize: 2 });
    });
    expect(settled).toBe(1);
    const update = two.find((statement) => /^(with .* )?update "charges"\."charges"/.test(statement.text));
    expect(update?.text).toMatch(/"id" = any\(\$\d+::text\[\]\)/);
    expect(one.map((statement) => statement.text)).toEqual(two.map((statement) => statement.text));
  });

  it("finds due charges through the partial index charges_settlement_due_idx, as run and as a prepared statement's generic plan", async () => {
    await Promise.all([authorized(), authorized()]);
    const pool = h.database.pool as pg.Pool;
    const statements = await connectionStatementsOf(pool, () => settleDueCharges(h.database.db, { delayMs: 0, batchSize: 100 }));
    const select = statements.find((statement) => /^select .* for update skip locked$/.test(statement.text));
    if (!select) throw new Error(`no settlement select among ${JSON.stringify(statements.map((s) => s.text))}`);
    const client = await pool.connect();
    try {
      // Whatever the table's size here, a plan that could avoid reading every row does.
      await client.query('set enable_seqscan = off');
      const indexesOf = (plan: unknown): string[] => {
        const text = JSON.stringify(plan);
        expect(text).not.toContain('"Seq Scan"');
        return [...text.matchAll(/"Index Name":"([^"]+)"/g)].map((match) => match[1] ?? '');
      };
      const asRun = await client.query({ text: `explain (format json) ${select.text}`, values: select.values });
      expect(indexesOf(asRun.rows[0])).toEqual(['charges_settlement_due_idx']);
      // After five runs a prepared statement may switch to a plan for any parameter values:
      // the index must still be provable from the query's own text.
      await client.query('set plan_cache_mode = force_generic_plan');
      await client.query(`prepare settlement_due as ${select.text}`);
      const literal = (value: unknown) =>
        typeof value === 'number' ? String(value) : Array.isArray(value) ? `'{${value.join(',')}}'` : `'${String(value)}'`;
      const literals = select.values.map(literal).join(', ');
      const generic = await client.query(`explain (format json) execute settlement_due(${literals})`);
      expect(indexesOf(generic.rows[0])).toEqual(['charges_settlement_due_idx']);
    } finally {
      await client.query('deallocate settlement_due; reset enable_seqscan; reset plan_cache_mode').catch(() => undefined);
      client.release();
    }
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

describe('the settlement backlog gauges', () => {
  const gauge = async (name: string) => (await h.service.registry.getSingleMetric(name)?.get())?.values[0]?.value;

  it('show, after each pass, the due charges left and how long the oldest has waited past its delay; and the passed-over count', async () => {
    // A due charge the pass cannot take: another transaction holds its row (SKIP LOCKED passes it over).
    const stuck = await authorized();
    await h.database.db
      .update(charges)
      .set({ createdAt: new Date(Date.now() - 20 * 60_000), authorizedAt: new Date(Date.now() - 20 * 60_000) })
      .where(eq(charges.id, stuck.id));
    const pool = h.database.pool!;
    const other = await pool.connect();
    try {
      await other.query('begin');
      await other.query('select id from charges.charges where id = $1 for update', [stuck.id]);
      await h.service.settlement.runOnce();
      // 20 minutes after its authorization, less the 5 s delay, by the database's clock.
      const oldest = await gauge('charges_settlement_oldest_due_seconds');
      expect(oldest).toBeGreaterThan(20 * 60 - 5 - 5);
      expect(oldest).toBeLessThan(20 * 60 - 5 + 60);
      expect(await gauge('charges_settlement_due')).toBeGreaterThanOrEqual(1);
      await other.query('commit');
    } finally {
      other.release();
    }
    // The next pass settles it: nothing has waited past its delay any more.
    await h.service.settlement.runOnce();
    const [row] = await h.database.db.select({ status: charges.status }).from(charges).where(eq(charges.id, stuck.id));
    expect(row?.status).toBe('SETTLED');
    expect(await gauge('charges_settlement_oldest_due_seconds')).toBeLessThan(5);
    expect(await gauge('charges_settlement_passed_over')).toBe(0);
    // The series are exposed for Prometheus (the alert rules' input).
    const text = await h.service.registry.metrics();
    for (const name of ['charges_settlement_due', 'charges_settlement_oldest_due_seconds', 'charges_settlement_passed_over']) {
      expect(text).toMatch(new RegExp(`^${name}\\{service="charges"\\} \\d`, 'm'));
    }
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

  it.each([
    ['a NUL in the charge id', (id: string) => `${id}\u0000`, 'r-nul', 'id'],
    ['a NUL in the idempotency key', (id: string) => id, 'r-nul\u0000', 'idempotencyKey'],
    ['a C1 control in the idempotency key', (id: string) => id, 'r-\u009b', 'idempotencyKey'],
    ['a card number in the idempotency key', (id: string) => id, 'refund-4111111111111111', 'idempotencyKey'],
  ])('rejects %s with BAD_USER_INPUT naming the field and writes nothing', async (_name, id, key, field) => {
    const charge = await authorized(1_000);
    const keysBefore = await h.database.db.select({ n: count() }).from(chargeIdempotencyKeys);
    const result = await refund(id(charge.id), 100, key);
    expect(result.errors?.[0]?.extensions).toMatchObject({ code: 'BAD_USER_INPUT', fields: [{ field }] });
    expect(await h.database.db.select().from(refunds).where(eq(refunds.chargeId, charge.id))).toEqual([]);
    const [row] = await h.database.db.select().from(charges).where(eq(charges.id, charge.id));
    expect(row).toMatchObject({ status: 'AUTHORIZED', refundedAmount: 0 });
    expect(await h.database.db.select({ n: count() }).from(chargeIdempotencyKeys)).toEqual(keysBefore);
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

  it('answers a cursor of the right shape naming an impossible instant with BAD_USER_INPUT, not INTERNAL_SERVER_ERROR', async () => {
    const list = `query ($after: String) { charges(first: 2, after: $after) { nodes { id } } }`;
    const cursor = (createdAt: string) => Buffer.from(JSON.stringify([createdAt, 'ch_x'])).toString('base64url');
    for (const instant of ['2024-13-45T99:99:99.000000Z', '2024-02-30T00:00:00.000000Z', '0000-01-01T00:00:00.000000Z']) {
      const result = await h.gql(list, { after: cursor(instant) }, bearer);
      expect(result.errors?.[0]?.extensions, instant).toMatchObject({ code: 'BAD_USER_INPUT', fields: [{ field: 'after' }] });
    }
    const leapDay = await h.gql(list, { after: cursor('2024-02-29T23:59:59.999999Z') }, bearer);
    expect(leapDay.errors).toBeUndefined();
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

  it('answers ids with a NUL as not found or BAD_USER_INPUT, and still resolves the rest of a batch', async () => {
    const charge = await authorized();
    const missing = await h.gql(chargeQuery, { id: `${charge.id}\u0000` }, bearer);
    expect(missing.errors?.[0]?.extensions?.code).toBe('NOT_FOUND');
    const list = `query ($cardId: ID) { charges(filter: { cardId: $cardId }) { nodes { id } } }`;
    const filtered = await h.gql(list, { cardId: `${charge.card.id}\u0000` }, bearer);
    expect(filtered.errors?.[0]?.extensions).toMatchObject({ code: 'BAD_USER_INPUT', fields: [{ field: 'filter.cardId' }] });
    const entities = `query ($reps: [_Any!]!) { _entities(representations: $reps) { ... on Charge { id } ... on Card { charges { id } } } }`;
    const batch = await h.gql<{ _entities: unknown[] }>(
      entities,
      {
        reps: [
          { __typename: 'Charge', id: charge.id },
          { __typename: 'Charge', id: 'ch_\u0000' },
          { __typename: 'Card', id: charge.card.id },
          { __typename: 'Card', id: 'card_\u0000' },
        ],
      },
      bearer,
    );
    expect(batch.errors).toBeUndefined();
    expect(batch.data?._entities).toEqual([{ id: charge.id }, null, { charges: [{ id: charge.id }] }, { charges: [] }]);
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
