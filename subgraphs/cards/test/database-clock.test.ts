import { cardIdempotencyKeys, cards, revealAudit, revealCounters } from '@ghostpay/db';
import type { Principal } from '@ghostpay/platform';
import { eq, inArray, like, sql } from 'drizzle-orm';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it, vi } from 'vitest';
import { createPostgresRateLimitStore, issueCard, runCardsHousekeeping } from '../src/index.ts';
import { createPanSecrets } from '../src/pan-crypto.ts';
import { revealCard } from '../src/reveal-card.ts';
import { type CardsHarness, issue, startCardsHarness } from './cards-harness.ts';

// Several replicas share one database, and their clocks need not agree with it (or with each
// other). Whatever decides a card's state in the database is judged on the database's clock;
// these tests run the service's code on a replica whose clock is off by `skewMs`.
const skewMs = 2 * 3_600_000;

/** Runs `run` with this process's Date `offsetMs` away from the real time (timers are not faked). */
async function onSkewedReplica<T>(offsetMs: number, run: () => Promise<T>): Promise<T> {
  vi.useFakeTimers({ toFake: ['Date'], now: Date.now() + offsetMs });
  try {
    return await run();
  } finally {
    vi.useRealTimers();
  }
}

/**
 * Only a database with a clock of its own can disagree with the replica: PGlite (standing in when
 * there is no PostgreSQL cluster) runs in this process, and a faked Date moves its now() too.
 */
const separateDatabaseClock = Boolean(inject('postgresAdminUrl'));

type Actor = Awaited<ReturnType<CardsHarness['actor']>>;
let h: CardsHarness;
let merchant: Actor;
let holder: Actor;

beforeAll(async () => {
  h = await startCardsHarness({ CARDS_HOUSEKEEPING_ENABLED: 'false' });
  [merchant, holder] = await Promise.all([h.actor('merchant'), h.actor('user')]);
});
afterAll(async () => {
  await h?.close();
});
afterEach(() => {
  vi.useRealTimers();
});

const principalOf = (actor: Actor): Principal =>
  ({ userId: actor.id, role: actor.role, scopes: [], apiKeyId: 'k', tokenId: 't', expiresAt: 0 }) as Principal;

describe('issuing a card on a replica whose clock is off', () => {
  it.each([
    ['behind', -skewMs],
    ['ahead', skewMs],
  ])('gives it exactly the lifetime asked for on the database’s clock (replica %s)', async (_name, offset) => {
    const deps = { db: h.database.db, panSecrets: createPanSecrets(h.secrets), limits: h.config, logger: h.logger };
    const lifetimeSeconds = 3_600;
    const card = await onSkewedReplica(offset, () =>
      issueCard(deps, principalOf(merchant), { userId: holder.id, amount: 500, currency: 'USD', expiresInSeconds: lifetimeSeconds }),
    );
    const [row] = await h.database.db
      .select({
        lifetimeMs: sql<string>`extract(epoch from ${cards.expiresAt} - ${cards.createdAt}) * 1000`,
        chargeable: sql<boolean>`${cards.expiresAt} > now()`,
        expMonth: cards.expMonth,
        expYear: cards.expYear,
        expiresAt: cards.expiresAt,
      })
      .from(cards)
      .where(eq(cards.id, card.id));
    // An hour from when the database created it, to the millisecond (2 h short or long before;
    // behind, the card was born expired).
    expect(Math.abs(Number(row?.lifetimeMs) - lifetimeSeconds * 1000)).toBeLessThan(1);
    expect(row?.chargeable).toBe(true);
    expect(row?.expMonth).toBe(row!.expiresAt.getUTCMonth() + 1);
    expect(row?.expYear).toBe(row!.expiresAt.getUTCFullYear());
    expect(card.expiresAt).toEqual(row?.expiresAt);
  });
});

describe('housekeeping on a replica whose clock is ahead', () => {
  it('keeps idempotency keys for the full retention by the database’s clock, and drops the ones past it', async () => {
    const issued: Record<string, string> = {};
    for (const [key, ageHours] of [
      ['clock-23h', 23],
      ['clock-25h', 25],
    ] as const) {
      const card = await h.seed.card({ ownerId: holder.id, issuerId: merchant.id });
      issued[key] = card.id;
      await h.database.db.insert(cardIdempotencyKeys).values({
        issuerId: merchant.id,
        key,
        fingerprint: 'f',
        cardId: card.id,
        createdAt: sql`now() - make_interval(hours => ${ageHours})`,
      });
    }
    await onSkewedReplica(skewMs, () =>
      runCardsHousekeeping(h.database.db, { revealWindowMs: 3_600_000, idempotencyRetentionHours: 24, panRetentionDays: 30 }),
    );
    const kept = await h.database.db
      .select({ key: cardIdempotencyKeys.key })
      .from(cardIdempotencyKeys)
      .where(inArray(cardIdempotencyKeys.key, Object.keys(issued)));
    // 23 hours old: a client may still retry with it (on the old code, 23 + 2 > 24: pruned, and
    // the retry would have issued a second card).
    expect(kept.map((row) => row.key)).toEqual(['clock-23h']);
  });

  it('never deletes the reveal counter of a window the database is still counting in', async () => {
    const windowMs = 3_600_000;
    const store = createPostgresRateLimitStore({ db: h.database.db, windowMs, max: 5 });
    const identity = { contextIdentity: holder.id, fieldIdentity: 'clock-prune' };
    for (let i = 0; i < 5; i++) await store.getForIdentity(identity);
    await onSkewedReplica(skewMs, () =>
      runCardsHousekeeping(h.database.db, { revealWindowMs: windowMs, idempotencyRetentionHours: 24, panRetentionDays: 30 }),
    );
    // Still five calls counted in this window: a sixth is refused.
    expect(await store.getForIdentity(identity)).toHaveLength(5);
  });
});

describe('the reveal limit across replicas whose clocks disagree', () => {
  const windowMs = 3_600_000;
  const max = 5;

  it('counts every replica’s attempts in the database’s window: exactly `max` pass', async () => {
    const identity = { contextIdentity: holder.id, fieldIdentity: 'clock-window' };
    const onTime = createPostgresRateLimitStore({ db: h.database.db, windowMs, max });
    const ahead = createPostgresRateLimitStore({ db: h.database.db, windowMs, max, now: () => Date.now() + skewMs });
    const earlier: number[] = [];
    for (const store of [onTime, ahead, onTime, ahead, onTime, ahead, onTime, ahead]) {
      earlier.push((await store.getForIdentity(identity)).length);
    }
    // The limiter passes a call while fewer than `max` came before it in the window.
    expect(earlier).toEqual([0, 1, 2, 3, 4, 5, 5, 5]);
    const windows = await h.database.db
      .select({ windowStart: revealCounters.windowStart })
      .from(revealCounters)
      .where(like(revealCounters.actorId, `${holder.id}|clock-window`));
    expect(windows).toHaveLength(1);
  });

  it('tells a refused caller when the database’s window ends, on any replica', async () => {
    const skew = 90 * 60_000; // not a whole number of windows
    const identity = { contextIdentity: holder.id, fieldIdentity: 'clock-retry' };
    const ahead = createPostgresRateLimitStore({ db: h.database.db, windowMs, max, now: () => Date.now() + skew });
    await ahead.getForIdentity(identity);
    const retryAfterMs = ahead.windowEnd() - (Date.now() + skew);
    const [row] = await h.database.db
      .select({
        leftMs: sql<string>`extract(epoch from ${revealCounters.windowStart} + make_interval(secs => ${windowMs / 1000}) - now()) * 1000`,
      })
      .from(revealCounters)
      .where(like(revealCounters.actorId, `${holder.id}|clock-retry`));
    expect(Math.abs(retryAfterMs - Number(row?.leftMs))).toBeLessThan(1_000);
  });
});

describe.skipIf(!separateDatabaseClock)('revealing a card on a replica whose clock is behind', () => {
  it('refuses a card the database says has expired, and audits the refusal, not a reveal', async () => {
    const deps = { db: h.database.db, panSecrets: createPanSecrets(h.secrets), limits: h.config, logger: h.logger };
    const card = await issueCard(deps, principalOf(merchant), { userId: holder.id, amount: 500, currency: 'USD' });
    await h.database.db.update(cards).set({ expiresAt: sql`now() - interval '1 minute'` }).where(eq(cards.id, card.id));
    await expect(
      onSkewedReplica(-skewMs, () => revealCard(h.database.db, deps.panSecrets, principalOf(holder), card.id, 'req-clock')),
    ).rejects.toMatchObject({ extensions: { code: 'BAD_USER_INPUT' } });
    const audit = await h.database.db.select({ outcome: revealAudit.outcome }).from(revealAudit).where(eq(revealAudit.cardId, card.id));
    expect(audit).toEqual([{ outcome: 'NOT_ACTIVE' }]);
  });
});

describe.skipIf(!separateDatabaseClock)('reading cards on a replica whose clock is off', () => {
  const read = `query Read($id: ID!, $other: ID!, $owner: ID!, $representations: [_Any!]!) {
    card(id: $id) { id status }
    other: card(id: $other) { id status }
    active: cards(filter: { status: ACTIVE, userId: $owner }) { edges { node { id status } } }
    expired: cards(filter: { status: EXPIRED, userId: $owner }) { edges { node { id status } } }
    _entities(representations: $representations) { ... on Card { id status } }
  }`;
  type Status = { id: string; status: string };
  type Read = {
    card: Status;
    other: Status;
    active: { edges: { node: Status }[] };
    expired: { edges: { node: Status }[] };
    _entities: Status[];
  };

  it.each([
    ['behind', -skewMs],
    ['ahead', skewMs],
  ])(
    'shows the status the database’s clock gives, as the status filter and the money paths judge it (replica %s)',
    async (_name, offset) => {
      const owner = await h.seed.user('user');
      // By the database's clock: one expired a minute ago, one expires in a minute.
      const lapsed = await h.seed.card({ ownerId: owner.id, issuerId: merchant.id });
      const live = await h.seed.card({ ownerId: owner.id, issuerId: merchant.id });
      await h.database.db.update(cards).set({ expiresAt: sql`now() - interval '1 minute'` }).where(eq(cards.id, lapsed.id));
      await h.database.db.update(cards).set({ expiresAt: sql`now() + interval '1 minute'` }).where(eq(cards.id, live.id));
      const result = await onSkewedReplica(offset, async () => {
        // Minted on the replica's clock, as its verifier judges tokens by it.
        const token = await h.tokens.mint({ userId: owner.id, role: 'user' });
        return h.request<Read>(token, read, {
          id: lapsed.id,
          other: live.id,
          owner: owner.id,
          representations: [lapsed.id, live.id].map((id) => ({ __typename: 'Card', id })),
        });
      });
      expect(result.errors).toBeUndefined();
      const expired = { id: lapsed.id, status: 'EXPIRED' };
      const active = { id: live.id, status: 'ACTIVE' };
      // Behind, the old code showed the lapsed card ACTIVE; ahead, the live one EXPIRED (even in
      // the page the ACTIVE filter chose it for).
      expect(result.data).toEqual({
        card: expired,
        other: active,
        active: { edges: [{ node: active }] },
        expired: { edges: [{ node: expired }] },
        _entities: [expired, active],
      });
    },
  );

  it('answers an idempotent retry of an issuance with the card’s status by the database’s clock (replica behind)', async () => {
    const owner = await h.seed.user('user');
    const input = { userId: owner.id, amount: 700, currency: 'USD' };
    const issued = await issue(h, merchant.token, input, 'clock-replay');
    expect(issued.status).toBe('ACTIVE');
    await h.database.db.update(cards).set({ expiresAt: sql`now() - interval '1 minute'` }).where(eq(cards.id, issued.id));
    const replayed = await onSkewedReplica(-skewMs, async () =>
      issue(h, await h.tokens.mint({ userId: merchant.id, role: 'merchant' }), input, 'clock-replay'),
    );
    expect({ id: replayed.id, status: replayed.status }).toEqual({ id: issued.id, status: 'EXPIRED' });
  });
});
