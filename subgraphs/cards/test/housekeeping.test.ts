import { cardIdempotencyKeys, cards, revealCounters } from '@ghostpay/db';
import { capturingLogger, connectionStatementsOf, poolStatementsOf } from '@ghostpay/test-support';
import { eq, inArray, sql } from 'drizzle-orm';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCardsHousekeeping, eraseCardPans, expireCards, HousekeepingPassError, runCardsHousekeeping } from '../src/index.ts';
import { type CardsHarness, type IssuedCard, issueCardMutation, startCardsHarness } from './cards-harness.ts';

describe('cards housekeeping', () => {
  let h: CardsHarness;
  beforeAll(async () => {
    // The service's own job stays off here: each test runs the pass itself.
    h = await startCardsHarness({ CARDS_HOUSEKEEPING_ENABLED: 'false' });
  });
  afterAll(async () => {
    await h?.close();
  });

  it('is not running when disabled', () => {
    expect(h.service.housekeeping.running).toBe(false);
  });

  it('expires past cards, drops ended reveal windows and keys past their retention, and nothing else', async () => {
    const merchant = await h.actor('merchant');
    const user = await h.actor('user');
    const issueWithKey = async (key: string) => {
      const result = await h.request<{ issueCard: IssuedCard }>(merchant.token, issueCardMutation, {
        input: { userId: user.id, amount: 700, currency: 'USD', expiresInSeconds: 3600 },
        key,
      });
      expect(result.errors).toBeUndefined();
      return result.data?.issueCard as IssuedCard;
    };
    const past = await issueWithKey('old-key');
    const live = await issueWithKey('new-key');
    await h.database.db.update(cards).set({ expiresAt: sql`now() - interval '1 second'` }).where(eq(cards.id, past.id));
    // The first key is two days old, the second fresh.
    await h.database.db
      .update(cardIdempotencyKeys)
      .set({ createdAt: sql`now() - interval '48 hours'` })
      .where(eq(cardIdempotencyKeys.key, 'old-key'));
    const windowMs = 60_000;
    const now = Date.now();
    const current = new Date(now - (now % windowMs));
    await h.database.db.insert(revealCounters).values([
      { actorId: `${user.id}|ended`, windowStart: new Date(current.getTime() - 2 * windowMs), count: 3 },
      { actorId: `${user.id}|current`, windowStart: current, count: 1 },
    ]);

    const result = await runCardsHousekeeping(h.database.db, {
      revealWindowMs: windowMs,
      idempotencyRetentionHours: 24,
      panRetentionDays: 30,
    });
    expect(result.expired).toBeGreaterThanOrEqual(1);
    expect(result.revealCountersPruned).toBeGreaterThanOrEqual(1);
    expect(result.idempotencyKeysPruned).toBeGreaterThanOrEqual(1);

    const statusOf = async (id: string) => (await h.database.db.select({ s: cards.status }).from(cards).where(eq(cards.id, id)))[0]?.s;
    expect(await statusOf(past.id)).toBe('EXPIRED');
    expect(await statusOf(live.id)).toBe('ACTIVE');
    const counters = await h.database.db.select({ actorId: revealCounters.actorId }).from(revealCounters);
    expect(counters.map((c) => c.actorId)).toContain(`${user.id}|current`);
    expect(counters.map((c) => c.actorId)).not.toContain(`${user.id}|ended`);
    const keys = (await h.database.db.select({ key: cardIdempotencyKeys.key }).from(cardIdempotencyKeys)).map((k) => k.key);
    expect(keys).toContain('new-key');
    expect(keys).not.toContain('old-key');

    // A retry with the kept key replays its card; the pruned key is a new request.
    expect((await issueWithKey('new-key')).id).toBe(live.id);
    expect((await issueWithKey('old-key')).id).not.toBe(past.id);

    // A second pass finds nothing left to do.
    expect(
      await runCardsHousekeeping(h.database.db, { revealWindowMs: windowMs, idempotencyRetentionHours: 24, panRetentionDays: 30 }),
    ).toEqual({
      expired: 0,
      pansErased: 0,
      revealCountersPruned: 0,
      idempotencyKeysPruned: 0,
    });
  });
});

describe('expireCards', () => {
  let h: CardsHarness;
  beforeAll(async () => {
    h = await startCardsHarness({ CARDS_HOUSEKEEPING_ENABLED: 'false' });
  });
  afterAll(async () => {
    await h?.close();
  });

  it('sweeps a backlog in batches, one statement of the same text each, and counts every card', async () => {
    const merchant = await h.actor('merchant');
    const user = await h.actor('user');
    const past = new Date(Date.now() - 1_000);
    const expired = [];
    for (let i = 0; i < 5; i++) expired.push((await h.seed.card({ ownerId: user.id, issuerId: merchant.id, expiresAt: past })).id);
    const live = await h.seed.card({ ownerId: user.id, issuerId: merchant.id });
    const used = await h.seed.card({ ownerId: user.id, issuerId: merchant.id, expiresAt: past });
    // USED as an authorization leaves it (with used_at: migration 0003's cards_used_at_matches_status).
    await h.database.db.update(cards).set({ status: 'USED', usedAt: new Date() }).where(eq(cards.id, used.id));
    const { result, statements } = await poolStatementsOf(h.database.pool!, () => expireCards(h.database.db, 2));
    expect(result).toBe(5);
    // Batches of 2, 2 and 1: the short one ends the sweep. One text for every batch, so one
    // prepared statement per connection however many cards a batch holds.
    const updates = statements.filter((s) => s.startsWith('update'));
    expect(updates).toHaveLength(3);
    expect(new Set(updates).size).toBe(1);
    const statuses = await h.database.db
      .select({ id: cards.id, status: cards.status })
      .from(cards)
      .where(inArray(cards.id, [...expired, live.id, used.id]));
    const statusOf = (id: string) => statuses.find((row) => row.id === id)?.status;
    for (const id of expired) expect(statusOf(id)).toBe('EXPIRED');
    expect(statusOf(live.id)).toBe('ACTIVE');
    expect(statusOf(used.id)).toBe('USED');
    expect(await expireCards(h.database.db, 2)).toBe(0);
  });

  it("finds due cards through the partial index cards_expiry_due_idx, as run and as a prepared statement's generic plan", async () => {
    const merchant = await h.actor('merchant');
    const user = await h.actor('user');
    await h.seed.card({ ownerId: user.id, issuerId: merchant.id, expiresAt: new Date(Date.now() - 1_000) });
    const pool = h.database.pool as pg.Pool;
    const statements = await connectionStatementsOf(pool, () => expireCards(h.database.db, 100));
    const sweep = statements.find((statement) => /^update .* for update skip locked\) returning/.test(statement.text));
    if (!sweep) throw new Error(`no expiry sweep among ${JSON.stringify(statements.map((s) => s.text))}`);
    const client = await pool.connect();
    try {
      // Whatever the table's size here, a plan that could avoid reading every row does.
      await client.query('set enable_seqscan = off');
      /** The scan that chooses the due cards: the one over the sweep's condition, by index and by its expiry bound. */
      const dueScanOf = (plan: unknown) => {
        const text = JSON.stringify(plan);
        expect(text).not.toContain('"Seq Scan"');
        const scans = [...text.matchAll(/"Index Name":"([^"]+)"[^{}]*?"Index Cond":"([^"]*)"/g)].map((match) => ({
          index: match[1],
          condition: match[2],
        }));
        return scans.filter((scan) => scan.index !== 'cards_pkey');
      };
      const due = [{ index: 'cards_expiry_due_idx', condition: '(expires_at <= now())' }];
      // EXPLAIN without ANALYZE plans the update and runs nothing.
      const asRun = await client.query({ text: `explain (format json) ${sweep.text}`, values: sweep.values });
      expect(dueScanOf(asRun.rows[0])).toEqual(due);
      // After five runs a prepared statement may switch to a plan for any parameter values:
      // the index must still be provable from the query's own text.
      await client.query('set plan_cache_mode = force_generic_plan');
      await client.query(`prepare expiry_due as ${sweep.text}`);
      const literal = (value: unknown) => (typeof value === 'number' ? String(value) : `'${String(value)}'`);
      const generic = await client.query(`explain (format json) execute expiry_due(${sweep.values.map(literal).join(', ')})`);
      expect(dueScanOf(generic.rows[0])).toEqual(due);
    } finally {
      await client.query('deallocate expiry_due; reset enable_seqscan; reset plan_cache_mode').catch(() => undefined);
      client.release();
    }
  });
});

describe('PAN retention', () => {
  let h: CardsHarness;
  beforeAll(async () => {
    h = await startCardsHarness({ CARDS_HOUSEKEEPING_ENABLED: 'false' });
  });
  afterAll(async () => {
    await h?.close();
  });

  const rowOf = async (id: string) =>
    (
      await h.database.db
        .select({
          status: cards.status,
          panCiphertext: cards.panCiphertext,
          panFingerprint: cards.panFingerprint,
          panKeyId: cards.panKeyId,
          bin: cards.bin,
          last4: cards.last4,
          expMonth: cards.expMonth,
          expYear: cards.expYear,
        })
        .from(cards)
        .where(eq(cards.id, id))
    )[0];
  const daysAgo = (days: number) => sql`now() - make_interval(days => ${days})`;

  /** A seeded card that left ACTIVE `days` ago as `status` does (USED: used_at, CANCELED: canceled_at, EXPIRED: expires_at). */
  async function endedCard(status: 'USED' | 'CANCELED' | 'EXPIRED', days: number, ids: { ownerId: string; issuerId: string }) {
    const card = await h.seed.card({ ...ids, expiresAt: new Date(Date.now() + 3_600_000) });
    const when = daysAgo(days);
    if (status === 'USED') await h.database.db.update(cards).set({ status, usedAt: when }).where(eq(cards.id, card.id));
    if (status === 'CANCELED') await h.database.db.update(cards).set({ status, canceledAt: when }).where(eq(cards.id, card.id));
    // An expired card ended when it expired, however late the sweep rewrote its status.
    if (status === 'EXPIRED') await h.database.db.update(cards).set({ status, expiresAt: when }).where(eq(cards.id, card.id));
    return card.id;
  }

  it('erases the PANs of cards that left ACTIVE more than the retention ago, keeps the rest and everything but the ciphertext', async () => {
    const ids = { ownerId: (await h.actor('user')).id, issuerId: (await h.actor('merchant')).id };
    const due = [await endedCard('USED', 31, ids), await endedCard('CANCELED', 31, ids), await endedCard('EXPIRED', 31, ids)];
    const recent = [await endedCard('USED', 29, ids), await endedCard('CANCELED', 29, ids), await endedCard('EXPIRED', 29, ids)];
    const live = (await h.seed.card(ids)).id;
    // Expired 40 days ago but never swept: still stored ACTIVE, so the erasure alone leaves it.
    const unswept = (await h.seed.card({ ...ids, expiresAt: new Date(Date.now() - 40 * 86_400_000) })).id;
    const before = new Map(await Promise.all([...due, ...recent, live, unswept].map(async (id) => [id, await rowOf(id)] as const)));

    expect(await eraseCardPans(h.database.db, 30)).toBe(3);
    for (const id of due) {
      const row = await rowOf(id);
      expect(row?.panCiphertext).toBeNull();
      // Only the ciphertext goes: status, fingerprint (the number is never issued again), key id, BIN, last four, expiry stay.
      expect({ ...row, panCiphertext: before.get(id)?.panCiphertext }).toEqual(before.get(id));
    }
    for (const id of [...recent, live, unswept]) expect(await rowOf(id), id).toEqual(before.get(id));

    // The housekeeping sweeps the unswept card to EXPIRED first, then erases it in the same pass.
    expect(
      await runCardsHousekeeping(h.database.db, { revealWindowMs: 60_000, idempotencyRetentionHours: 24, panRetentionDays: 30 }),
    ).toMatchObject({
      expired: 1,
      pansErased: 1,
    });
    expect(await rowOf(unswept)).toMatchObject({ status: 'EXPIRED', panCiphertext: null });
    // The recent ones go once the retention is shorter than their age; the live card never.
    expect(await eraseCardPans(h.database.db, 28)).toBe(3);
    for (const id of recent) expect((await rowOf(id))?.panCiphertext).toBeNull();
    expect(await eraseCardPans(h.database.db, 0)).toBe(0);
    expect(await rowOf(live)).toEqual(before.get(live));
  });

  it('erases a backlog in batches, one statement of the same text each', async () => {
    const ids = { ownerId: (await h.actor('user')).id, issuerId: (await h.actor('merchant')).id };
    const due = [];
    for (let i = 0; i < 5; i++) due.push(await endedCard('CANCELED', 400, ids));
    const { result, statements } = await poolStatementsOf(h.database.pool!, () => eraseCardPans(h.database.db, 365, 2));
    expect(result).toBe(5);
    const updates = statements.filter((s) => s.startsWith('update'));
    expect(updates).toHaveLength(3);
    expect(new Set(updates).size).toBe(1);
    for (const id of due) expect((await rowOf(id))?.panCiphertext).toBeNull();
  });

  it('never erases a card that turns terminal in a transaction still open, nor waits for it; the next pass does once it commits', async () => {
    const ids = { ownerId: (await h.actor('user')).id, issuerId: (await h.actor('merchant')).id };
    const racing = (await h.seed.card(ids)).id;
    // Held by another transaction: a cancel of the ACTIVE card (stamped long ago, so due at once
    // when it commits), and a card already due that a re-encryption batch holds for update.
    const held = await endedCard('USED', 90, ids);
    const other = await h.database.pool!.connect();
    try {
      await other.query('begin');
      await other.query(`update cards.cards set status = 'CANCELED', canceled_at = now() - interval '90 days' where id = $1`, [racing]);
      await other.query('select id from cards.cards where id = $1 for update', [held]);
      // Not waited for: a statement timeout far below the default shows a wait as an error.
      const erased = await h.database.db.transaction(async (tx) => {
        await tx.execute(sql`set local statement_timeout = 2000`);
        return eraseCardPans(tx as unknown as typeof h.database.db, 30);
      });
      expect(erased).toBe(0);
      expect((await rowOf(racing))?.panCiphertext).not.toBeNull();
      expect((await rowOf(held))?.panCiphertext).not.toBeNull();
      await other.query('commit');
    } catch (error) {
      await other.query('rollback');
      throw error;
    } finally {
      other.release();
    }
    expect(await eraseCardPans(h.database.db, 30)).toBe(2);
    expect(await rowOf(racing)).toMatchObject({ status: 'CANCELED', panCiphertext: null });
    expect((await rowOf(held))?.panCiphertext).toBeNull();
  });

  it('never erases an ACTIVE card, however long ago it expired: the database refuses it too', async () => {
    const ids = { ownerId: (await h.actor('user')).id, issuerId: (await h.actor('merchant')).id };
    const card = (await h.seed.card({ ...ids, expiresAt: new Date(Date.now() - 400 * 86_400_000) })).id;
    expect(await eraseCardPans(h.database.db, 0)).toBe(0);
    expect((await rowOf(card))?.panCiphertext).not.toBeNull();
    const refused = await h.database.db
      .update(cards)
      .set({ panCiphertext: null })
      .where(eq(cards.id, card))
      .then(
        () => 'accepted',
        (error: { cause?: { constraint?: string } }) => error.cause?.constraint,
      );
    expect(refused).toBe('cards_active_has_pan');
  });

  it('erases due PANs and prunes in a pass whose expiry sweep fails, then reports the failure with the counts', async () => {
    const ids = { ownerId: (await h.actor('user')).id, issuerId: (await h.actor('merchant')).id };
    const due = [await endedCard('USED', 90, ids), await endedCard('CANCELED', 90, ids)];
    const pastActive = (await h.seed.card({ ...ids, expiresAt: new Date(Date.now() - 1_000) })).id;
    const windowMs = 60_000;
    const endedWindow = new Date(Date.now() - 3 * windowMs);
    await h.database.db.insert(revealCounters).values({ actorId: `${ids.ownerId}|ended`, windowStart: endedWindow, count: 2 });
    const options = { revealWindowMs: windowMs, idempotencyRetentionHours: 24, panRetentionDays: 30 };
    // The sweep fails on every pass, as one past the statement timeout on a large table would.
    await h.database.db.execute(
      sql.raw(`create function cards.refuse_expiry() returns trigger language plpgsql as $$ begin raise exception 'sweep refused'; end $$;
        create trigger refuse_expiry before update on cards.cards for each row when (old.status = 'ACTIVE' and new.status = 'EXPIRED')
        execute function cards.refuse_expiry()`),
    );
    try {
      const failed = await runCardsHousekeeping(h.database.db, options).then(
        () => undefined,
        (error: unknown) => error,
      );
      // The later steps ran: the retention is not hostage to the sweep.
      expect((await rowOf(due[0]!))?.panCiphertext).toBeNull();
      const counters = await h.database.db.select({ actorId: revealCounters.actorId }).from(revealCounters);
      expect(counters.map((c) => c.actorId)).not.toContain(`${ids.ownerId}|ended`);
      expect((await rowOf(pastActive))?.status).toBe('ACTIVE');
      // And the pass still fails, naming the step, with the others' counts.
      expect(failed).toBeInstanceOf(HousekeepingPassError);
      const error = failed as HousekeepingPassError;
      expect(error.failedSteps).toEqual(['expired']);
      expect(error.errors).toHaveLength(1);
      expect(error.result).toMatchObject({ expired: 0, pansErased: 2, revealCountersPruned: 1 });

      // The job logs what the other steps did before its run fails.
      const another = await endedCard('USED', 90, ids);
      const captured = capturingLogger('cards');
      const job = createCardsHousekeeping({ ...options, db: h.database.db, logger: captured.logger, intervalMs: 60_000 });
      await expect(job.runOnce()).rejects.toBeInstanceOf(HousekeepingPassError);
      expect((await rowOf(another))?.panCiphertext).toBeNull();
      const logged = captured.parsed<{ msg: string; pansErased?: number }>().filter((line) => line.msg === 'cards housekeeping');
      expect(logged).toMatchObject([{ pansErased: 1 }]);
    } finally {
      await h.database.db.execute(sql.raw('drop trigger refuse_expiry on cards.cards; drop function cards.refuse_expiry()'));
    }
    // Once the sweep works again, the next pass takes what it left.
    const next = await runCardsHousekeeping(h.database.db, options);
    expect(next.expired).toBeGreaterThanOrEqual(1);
    expect(await rowOf(pastActive)).toMatchObject({ status: 'EXPIRED' });
  });
});

describe('the cards service', () => {
  it('erases PANs by CARD_PAN_RETENTION_DAYS while it serves', async () => {
    const h = await startCardsHarness({ CARDS_HOUSEKEEPING_INTERVAL_MS: '100', CARD_PAN_RETENTION_DAYS: '0' });
    try {
      const merchant = await h.actor('merchant');
      const user = await h.actor('user');
      const issued = await h.request<{ issueCard: IssuedCard }>(merchant.token, issueCardMutation, {
        input: { userId: user.id, amount: 700, currency: 'USD', expiresInSeconds: 3600 },
      });
      const id = issued.data?.issueCard.id as string;
      const cancel = await h.request(user.token, 'mutation($id: ID!) { cancelCard(id: $id) { status } }', { id });
      expect(cancel.errors).toBeUndefined();
      // With the default 30 days the canceled card would keep its PAN for a month.
      const deadline = Date.now() + 5_000;
      let ciphertext: string | null | undefined;
      while (Date.now() < deadline) {
        ciphertext = (await h.database.db.select({ c: cards.panCiphertext }).from(cards).where(eq(cards.id, id)))[0]?.c;
        if (ciphertext === null) break;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      expect(ciphertext).toBeNull();
      expect(h.logLines.some((line) => line.includes('cards housekeeping') && line.includes('"pansErased":1'))).toBe(true);
    } finally {
      await h.close();
    }
  });

  it('runs housekeeping on its own while it serves, and stops it on close', async () => {
    const h = await startCardsHarness({ CARDS_HOUSEKEEPING_INTERVAL_MS: '100' });
    try {
      expect(h.service.housekeeping.running).toBe(true);
      const merchant = await h.actor('merchant');
      const user = await h.actor('user');
      const issued = await h.request<{ issueCard: IssuedCard }>(merchant.token, issueCardMutation, {
        input: { userId: user.id, amount: 700, currency: 'USD', expiresInSeconds: 3600 },
      });
      const id = issued.data?.issueCard.id as string;
      await h.database.db.update(cards).set({ expiresAt: sql`now() - interval '1 second'` }).where(eq(cards.id, id));
      const deadline = Date.now() + 5_000;
      let status: string | undefined;
      while (Date.now() < deadline) {
        status = (await h.database.db.select({ s: cards.status }).from(cards).where(eq(cards.id, id)))[0]?.s;
        if (status === 'EXPIRED') break;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      expect(status).toBe('EXPIRED');
    } finally {
      await h.close();
    }
    expect(h.service.housekeeping.running).toBe(false);
  });
});
