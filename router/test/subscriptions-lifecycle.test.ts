import { settleAllDue } from '@ghostpay/charges';
import { createSeed, createTestTokenIssuer, freshDatabase, type TestDatabase, type TestTokenIssuer } from '@ghostpay/test-support';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createCharge,
  refundCharge,
  startGate,
  startRealSubgraphs,
  startSubscriptionRouter,
  statuses,
  until,
  watchCharge,
  wsClient,
} from './subscriptions-harness.ts';

describe('chargeUpdated through the router (real auth, cards and charges subgraphs)', () => {
  let database: TestDatabase;
  let issuer: TestTokenIssuer;
  let subgraphs: Awaited<ReturnType<typeof startRealSubgraphs>>;
  /** The router reaches cards through this gate, to fail the cards part of an event on demand. */
  let cardsGate: Awaited<ReturnType<typeof startGate>>;
  let router: Awaited<ReturnType<typeof startSubscriptionRouter>>;
  let seed: ReturnType<typeof createSeed>;

  beforeAll(async () => {
    database = await freshDatabase({ poolSize: 20 });
    issuer = await createTestTokenIssuer();
    subgraphs = await startRealSubgraphs(database, issuer);
    cardsGate = await startGate(subgraphs.urls.cards);
    router = await startSubscriptionRouter({
      issuer,
      urls: { ...subgraphs.urls, cards: cardsGate.url },
    });
    seed = createSeed(database.db);
  });
  afterAll(async () => {
    await router?.close();
    await cardsGate?.close();
    await subgraphs?.close();
    await database?.close();
  });

  async function chargeForNewCard() {
    const merchant = await seed.user('merchant');
    const owner = await seed.user('user', { name: `Ada ${Math.random().toString(36).slice(2, 8)}` });
    const card = await seed.card({ ownerId: owner.id, issuerId: merchant.id, amount: 5_000 });
    const merchantBearer = await issuer.bearer({ userId: merchant.id, role: 'merchant' });
    const charge = await createCharge(router.graphqlUrl, merchantBearer, card.id);
    return { merchant, owner, card, merchantBearer, charge };
  }

  it('sends the card owner AUTHORIZED, then SETTLED, then REFUNDED, each with the card fields from cards and auth', async () => {
    const { owner, card, merchantBearer, charge } = await chargeForNewCard();
    expect(charge.status).toBe('AUTHORIZED');
    const client = wsClient(router.wsUrl, await issuer.bearer({ userId: owner.id, role: 'user' }));
    try {
      const watch = watchCharge(client, charge.id);
      await until(() => watch.events.length >= 1 || watch.errors.length > 0, 'the first event');
      expect(watch.errors).toEqual([]);

      await settleAllDue(database.db, { delayMs: 0, batchSize: 100 });
      await until(() => statuses(watch).includes('SETTLED'), 'SETTLED');
      await refundCharge(router.graphqlUrl, merchantBearer, charge.id);
      await until(() => statuses(watch).includes('REFUNDED'), 'REFUNDED');

      expect(statuses(watch)).toEqual(['AUTHORIZED', 'SETTLED', 'REFUNDED']);
      for (const event of watch.events) {
        expect(event.id).toBe(charge.id);
        expect(event.card).toEqual({ id: card.id, status: 'USED', last4: card.last4, owner: { id: owner.id, name: owner.name } });
      }
      expect(watch.events.at(-1)?.refundedAmount).toBe(1_500);
      expect(watch.errors).toEqual([]);
    } finally {
      await client.dispose();
    }
  });

  it('sends an event that cannot be resolved as a payload with errors, goes on, and flags the next payload as possibly missed', async () => {
    const { owner, merchantBearer, charge } = await chargeForNewCard();
    const client = wsClient(router.wsUrl, await issuer.bearer({ userId: owner.id, role: 'user' }));
    try {
      const watch = watchCharge(client, charge.id);
      await until(() => watch.events.length >= 1 || watch.errors.length > 0, 'the first event');

      // Cards is unreachable when the settlement event comes: its query cannot resolve `card`.
      // (The upstream's own first event may also land while the gate is shut: either fails the same way.)
      const failedPayload = () => watch.payloads.findIndex((p) => (p.errors?.length ?? 0) > 0);
      cardsGate.shut();
      try {
        await settleAllDue(database.db, { delayMs: 0, batchSize: 100 });
        await until(() => failedPayload() >= 0 || watch.errors.length > 0, 'a payload that could not be resolved');
      } finally {
        cardsGate.open();
      }
      const failed = watch.payloads[failedPayload()];
      expect(watch.errors).toEqual([]);
      expect(watch.completed).toBe(false);
      expect((failed?.data as { chargeUpdated?: unknown } | null | undefined)?.chargeUpdated ?? null).toBeNull();
      expect(failed?.errors?.every((e) => typeof (e as { extensions?: { code?: string } }).extensions?.code === 'string')).toBe(true);
      expect(failed?.extensions?.missedEvents).toBeUndefined();

      // The subscription is still live: the refund arrives with the whole selection, and the
      // first payload that resolved after the failed one says events may have been missed.
      await refundCharge(router.graphqlUrl, merchantBearer, charge.id);
      await until(() => statuses(watch).includes('REFUNDED') || watch.errors.length > 0, 'REFUNDED');
      expect(watch.errors).toEqual([]);
      const resolvedAfter = watch.payloads
        .slice(failedPayload() + 1)
        .find((p) => (p.data as { chargeUpdated?: unknown } | null | undefined)?.chargeUpdated);
      expect(resolvedAfter?.extensions).toEqual({ missedEvents: true });
      expect(statuses(watch)[0]).toBe('AUTHORIZED');
      expect(statuses(watch).at(-1)).toBe('REFUNDED');
      expect(watch.events.at(-1)?.card.owner.id).toBe(owner.id);
    } finally {
      await client.dispose();
    }
  });

  it("refuses a user subscribing to someone else's charge, without opening anything upstream", async () => {
    const { charge } = await chargeForNewCard();
    const stranger = await seed.user('user');
    const upstreamBefore = router.gateway.stats().upstream.subscriptions;
    const client = wsClient(router.wsUrl, await issuer.bearer({ userId: stranger.id, role: 'user' }));
    try {
      const watch = watchCharge(client, charge.id);
      await until(() => watch.errors.length > 0 || watch.completed, 'the refusal');
      expect(watch.events).toEqual([]);
      expect(watch.errors).toMatchObject([[{ extensions: { code: 'NOT_FOUND' } }]]);
      expect(router.gateway.stats().upstream.subscriptions).toBe(upstreamBefore);
    } finally {
      await client.dispose();
    }
  });

  it('refuses a connection whose token is invalid with close code 4401', async () => {
    const client = wsClient(router.wsUrl, 'Bearer not.a.token');
    try {
      const watch = watchCharge(client, 'ch_anything');
      await until(() => watch.errors.length > 0, 'the close');
      expect(client.closeEvents[0]?.code).toBe(4401);
    } finally {
      await client.dispose();
    }
  });
});
