import { chargeEvents, charges, type Database, pgErrorCode } from '@ghostpay/db';
import { asc, eq, inArray, sql } from 'drizzle-orm';
import type pg from 'pg';
import { describe, expect, it, vi } from 'vitest';
import { authorizeCharge, checkLedger, refundCharge, settleAllDue, settleDueCharges } from '../src/index.ts';
import { merchantDatabase } from './charges-harness.ts';

/**
 * Runs `run` with the first statement matching `pattern` held back (on its way to PostgreSQL) until
 * `whileHeld` has finished: what another writer commits meanwhile lands between the statements of
 * the transaction under test, as it would with a slower network or a busy event loop.
 */
async function holdingStatement<T>(pool: pg.Pool, pattern: RegExp, run: () => Promise<T>, whileHeld: () => Promise<void>): Promise<T> {
  const Client = pool.options.Client as typeof pg.Client;
  const query = Client.prototype.query as (...args: unknown[]) => unknown;
  let reached!: () => void;
  const held = new Promise<void>((resolve) => (reached = resolve));
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  let holding = false;
  const spy = vi.spyOn(Client.prototype, 'query').mockImplementation(function (this: pg.Client, ...args: unknown[]) {
    const [config] = args as [string | { text?: string }];
    const text = typeof config === 'string' ? config : config?.text;
    if (!holding && text && pattern.test(text)) {
      holding = true;
      reached();
      return released.then(() => query.apply(this, args));
    }
    return query.apply(this, args);
  } as never);
  try {
    const running = run();
    running.catch(() => undefined);
    // Fails (instead of hanging) when `run` ends without sending the statement.
    await Promise.race([
      held,
      running.then(
        () => Promise.reject(new Error(`finished without sending a statement matching ${pattern}`)),
        (error: unknown) => Promise.reject(error),
      ),
    ]);
    try {
      await whileHeld();
    } finally {
      release();
    }
    return await running;
  } finally {
    spy.mockRestore();
  }
}

/** Resolves once `count` backends wait for a lock (any), their statement naming `table`. */
async function untilWaiting(pool: pg.Pool, table: string, count = 1, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { rows } = await pool.query<{ n: number }>(
      `select count(*)::int as n from pg_stat_activity where wait_event_type = 'Lock' and datname = current_database() and query like $1`,
      [`%${table}%`],
    );
    if ((rows[0]?.n ?? 0) >= count) return;
    if (Date.now() > deadline) throw new Error(`no backend waited for a lock on ${table}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe('settlement batches', () => {
  const fx = merchantDatabase();
  const deps = () => ({ db: fx.database.db, idempotencyWaitMs: 5_000 });

  async function authorized(key: string, amount = 1_000) {
    const card = await fx.seed.card({ ownerId: fx.holderId, issuerId: fx.merchantId, amount, currency: 'USD' });
    return (await authorizeCharge(deps(), fx.principal(), { cardId: card.id, amount, currency: 'USD' }, key)).charge;
  }

  async function eventsOf(chargeId: string) {
    return fx.database.db.select().from(chargeEvents).where(eq(chargeEvents.chargeId, chargeId)).orderBy(asc(chargeEvents.id));
  }

  it('stamps a settlement when it holds the charge: a refund committed after the pass began comes before it, in the row and the events', async () => {
    const charge = await authorized('stamp-settle');
    const other = await authorized('stamp-settle-other');
    const pool = fx.database.pool;
    if (!pool) throw new Error('needs PostgreSQL');
    let refundedAt!: Date;
    // The pass has begun (its transaction's now() is fixed) when its select is held; the refund
    // commits before the select reads the charge, which it then settles with the refund applied.
    const settled = await holdingStatement(
      pool,
      /for update skip locked$/,
      () => settleDueCharges(fx.database.db, { delayMs: 0, batchSize: 100 }),
      async () => {
        // Clock readings a few ms apart, so "before" cannot hide in one millisecond.
        await new Promise((resolve) => setTimeout(resolve, 20));
        refundedAt = (await refundCharge(deps(), fx.principal(), charge.id, 300, 'stamp-settle-refund')).charge.updatedAt;
      },
    );
    expect(settled).toBeGreaterThanOrEqual(1);
    const [row] = await fx.database.db.select().from(charges).where(eq(charges.id, charge.id));
    expect(row).toMatchObject({ status: 'PARTIALLY_REFUNDED', refundedAmount: 300 });
    // Settled after the refund (its event follows the refund's), so not stamped before it.
    expect(row!.settledAt!.getTime()).toBeGreaterThanOrEqual(refundedAt.getTime());
    expect(row!.updatedAt).toEqual(row!.settledAt);
    // One reading for the whole batch.
    const [otherRow] = await fx.database.db.select().from(charges).where(eq(charges.id, other.id));
    expect(otherRow).toMatchObject({ status: 'SETTLED', settledAt: row!.settledAt, updatedAt: row!.settledAt });
    const events = await eventsOf(charge.id);
    const stamps = events.map((event) => (event.data as { updatedAt: string }).updatedAt);
    expect(stamps).toEqual([...stamps].sort());
    expect(events.at(-1)?.data).toMatchObject({ status: 'PARTIALLY_REFUNDED', settledAt: row!.settledAt!.toISOString() });
    expect(await checkLedger(fx.database)).toEqual([]);
  });

  it('settles a charge whose void waits for the batch, then voids it over the settlement (a refund): never both missed or doubled', async () => {
    const charge = await authorized('void-after-settle');
    const pool = fx.database.pool;
    if (!pool) throw new Error('needs PostgreSQL');
    let voiding!: Promise<Awaited<ReturnType<typeof refundCharge>>>;
    // The pass holds its batch (select done, update held); the void queues on the charge row.
    const settled = await holdingStatement(
      pool,
      /set "status" = case when "charges"\."charges"\."status" = 'AUTHORIZED'/,
      () => settleDueCharges(fx.database.db, { delayMs: 0, batchSize: 100 }),
      async () => {
        voiding = refundCharge(deps(), fx.principal(), charge.id, null, 'void-after-settle-refund');
        voiding.catch(() => undefined);
        await untilWaiting(pool, 'charges');
      },
    );
    expect(settled).toBeGreaterThanOrEqual(1);
    const { charge: voided } = await voiding;
    expect(voided).toMatchObject({ status: 'REFUNDED', refundedAmount: 1_000 });
    expect(voided.settledAt).toBeInstanceOf(Date);
    expect(voided.updatedAt.getTime()).toBeGreaterThanOrEqual(voided.settledAt!.getTime());
    expect((await eventsOf(charge.id)).map((event) => event.status)).toEqual(['AUTHORIZED', 'SETTLED', 'REFUNDED']);
    expect(await checkLedger(fx.database)).toEqual([]);
  });

  it('passes over a charge a void holds (without waiting for it), and never settles it once voided', async () => {
    const charge = await authorized('void-before-settle');
    const pool = fx.database.pool;
    if (!pool) throw new Error('needs PostgreSQL');
    let passDuringVoid = -1;
    // The void holds the charge row (its locking read done, its update held) while a pass runs.
    const { charge: voided } = await holdingStatement(
      pool,
      /set "status" = case when "charges"\."charges"\."refunded_amount"/,
      () => refundCharge(deps(), fx.principal(), charge.id, null, 'void-before-settle-refund'),
      async () => {
        passDuringVoid = await settleDueCharges(fx.database.db, { delayMs: 0, batchSize: 100 });
      },
    );
    expect(passDuringVoid).toBe(0);
    expect(voided).toMatchObject({ status: 'REFUNDED', settledAt: null });
    expect(await settleAllDue(fx.database.db, { delayMs: 0, batchSize: 100 })).toBe(0);
    const [row] = await fx.database.db.select().from(charges).where(eq(charges.id, charge.id));
    expect(row).toMatchObject({ status: 'REFUNDED', settledAt: null });
    expect((await eventsOf(charge.id)).map((event) => event.status)).toEqual(['AUTHORIZED', 'REFUNDED']);
    expect(await checkLedger(fx.database)).toEqual([]);
  });

  it('makes a duplicate with the same key but another amount wait for the in-flight original, then refuses it IDEMPOTENCY_KEY_REUSED', async () => {
    const charge = await authorized('reuse-in-flight');
    const pool = fx.database.pool;
    if (!pool) throw new Error('needs PostgreSQL');
    let duplicate!: Promise<unknown>;
    let same!: Promise<Awaited<ReturnType<typeof refundCharge>>>;
    const { charge: original } = await holdingStatement(
      pool,
      /set "status" = case when "charges"\."charges"\."refunded_amount"/,
      () => refundCharge(deps(), fx.principal(), charge.id, 300, 'reuse-in-flight-key'),
      async () => {
        duplicate = refundCharge(deps(), fx.principal(), charge.id, 400, 'reuse-in-flight-key');
        duplicate.catch(() => undefined);
        same = refundCharge(deps(), fx.principal(), charge.id, 300, 'reuse-in-flight-key');
        same.catch(() => undefined);
        await untilWaiting(pool, 'idempotency_keys', 2);
      },
    );
    await expect(duplicate).rejects.toMatchObject({ extensions: { code: 'IDEMPOTENCY_KEY_REUSED' } });
    expect(await same).toEqual({ charge: original, replayed: true });
    expect(original).toMatchObject({ status: 'PARTIALLY_REFUNDED', refundedAmount: 300 });
    expect((await eventsOf(charge.id)).map((event) => event.status)).toEqual(['AUTHORIZED', 'PARTIALLY_REFUNDED']);
    expect(await checkLedger(fx.database)).toEqual([]);
  });

  it('settles every other due charge past one it cannot settle, names that one, and does not retry it in later passes', async () => {
    const db: Database = fx.database.db;
    // Settle what earlier tests left due, so the pass below sees only this test's charges.
    await settleAllDue(db, { delayMs: 0, batchSize: 100 });
    // A charge the database refuses to settle, as on a database upgraded with a row that breaks a
    // check migrate had to leave NOT VALID: partially refunded with nothing refunded. The oldest
    // due charge, so every batch that does not skip it starts with it.
    const broken = await authorized('unsettleable');
    const [check] = (
      (await db.execute(sql`
        select pg_get_constraintdef(oid) as definition from pg_constraint
        where conrelid = 'charges.charges'::regclass and conname = 'charges_refunded_matches_status'
      `)) as unknown as { rows: { definition: string }[] }
    ).rows;
    if (!check) throw new Error('no charges_refunded_matches_status');
    await db.execute(sql`alter table charges.charges drop constraint charges_refunded_matches_status`);
    await db
      .update(charges)
      .set({ status: 'PARTIALLY_REFUNDED', authorizedAt: new Date(Date.now() - 3_600_000) })
      .where(eq(charges.id, broken.id));
    await db.execute(
      sql`alter table charges.charges add constraint charges_refunded_matches_status ${sql.raw(check.definition.replace(/ NOT VALID$/, ''))} not valid`,
    );
    const good = [];
    for (let i = 0; i < 5; i++) good.push(await authorized(`settleable-${i}`));
    const ids = good.map((charge) => charge.id);

    const unsettleable = new Map<string, unknown>();
    const options = { delayMs: 0, batchSize: 2, unsettleable, onUnsettleable: (id: string, error: unknown) => unsettleable.set(id, error) };
    expect(await settleAllDue(db, options)).toBe(5);
    const rows = await db.select().from(charges).where(inArray(charges.id, ids));
    expect(rows.map((row) => row.status)).toEqual(['SETTLED', 'SETTLED', 'SETTLED', 'SETTLED', 'SETTLED']);
    for (const id of ids) expect((await eventsOf(id)).map((event) => event.status)).toEqual(['AUTHORIZED', 'SETTLED']);
    expect([...unsettleable.keys()]).toEqual([broken.id]);
    expect(pgErrorCode(unsettleable.get(broken.id))).toBe('23514');
    const [brokenRow] = await db.select().from(charges).where(eq(charges.id, broken.id));
    expect(brokenRow).toMatchObject({ status: 'PARTIALLY_REFUNDED', settledAt: null });
    expect((await eventsOf(broken.id)).map((event) => event.status)).toEqual(['AUTHORIZED']);

    // A later pass skips it (no failed attempt, no second report) and settles what is new.
    const later = await authorized('settleable-later');
    const reports = vi.fn();
    expect(await settleAllDue(db, { ...options, onUnsettleable: reports })).toBe(1);
    expect(reports).not.toHaveBeenCalled();
    expect((await db.select().from(charges).where(eq(charges.id, later.id)))[0]?.status).toBe('SETTLED');
    // Without the process's memory (a restart) it is found again, and the rest still settle.
    const fresh = vi.fn();
    const afterRestart = await authorized('settleable-after-restart');
    expect(await settleAllDue(db, { delayMs: 0, batchSize: 2, onUnsettleable: fresh })).toBe(1);
    expect(fresh).toHaveBeenCalledTimes(1);
    expect(fresh.mock.calls[0]?.[0]).toBe(broken.id);
    expect((await db.select().from(charges).where(eq(charges.id, afterRestart.id)))[0]?.status).toBe('SETTLED');
  });
});
