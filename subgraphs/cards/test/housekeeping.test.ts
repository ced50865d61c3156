import { cardIdempotencyKeys, cards, revealCounters } from '@ghostpay/db';
import { poolStatementsOf } from '@ghostpay/test-support';
import { eq, inArray, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expireCards, runCardsHousekeeping } from '../src/index.ts';
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

    const result = await runCardsHousekeeping(h.database.db, { revealWindowMs: windowMs, idempotencyRetentionHours: 24 });
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
    expect(await runCardsHousekeeping(h.database.db, { revealWindowMs: windowMs, idempotencyRetentionHours: 24 })).toEqual({
      expired: 0,
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
});

describe('the cards service', () => {
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
