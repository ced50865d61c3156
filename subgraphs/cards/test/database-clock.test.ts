import { cards } from '@ghostpay/db';
import type { Principal } from '@ghostpay/platform';
import { eq, sql } from 'drizzle-orm';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { issueCard } from '../src/index.ts';
import { createPanSecrets } from '../src/pan-crypto.ts';
import { type CardsHarness, startCardsHarness } from './cards-harness.ts';

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
