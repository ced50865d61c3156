/**
 * A charge that is DECLINED or REFUNDED (in full) never changes again, yet its subscriptions
 * stayed open until the client left or its token expired: each held a slot of its API key's
 * subscription limit and the shared upstream subscription, and the client never learnt that
 * nothing more would come. Once the upstream reports a final state, each client gets the payload
 * of that state, then `complete`; subscribing to a charge already final gives its one payload,
 * then `complete`. Everything is released. A state that can still change (PARTIALLY_REFUNDED)
 * does not complete. Real auth, cards and charges subgraphs on PostgreSQL, both transports.
 */
import { createSeed, createTestTokenIssuer, freshDatabase, type TestDatabase, type TestTokenIssuer } from '@ghostpay/test-support';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { post } from './router-harness.ts';
import {
  createCharge,
  readEventStream,
  refundCharge,
  startGate,
  startRealSubgraphs,
  startSubscriptionRouter,
  statuses,
  until,
  watchCharge,
  wsClient,
} from './subscriptions-harness.ts';

describe('subscriptions complete at a final charge state', () => {
  let database: TestDatabase;
  let issuer: TestTokenIssuer;
  let subgraphs: Awaited<ReturnType<typeof startRealSubgraphs>>;
  let cardsGate: Awaited<ReturnType<typeof startGate>>;
  let router: Awaited<ReturnType<typeof startSubscriptionRouter>>;
  let seed: ReturnType<typeof createSeed>;

  beforeAll(async () => {
    database = await freshDatabase({ poolSize: 20 });
    issuer = await createTestTokenIssuer();
    subgraphs = await startRealSubgraphs(database, issuer);
    cardsGate = await startGate(subgraphs.urls.cards);
    router = await startSubscriptionRouter({ issuer, urls: { ...subgraphs.urls, cards: cardsGate.url } });
    seed = createSeed(database.db);
  });
  afterAll(async () => {
    await router?.close();
    await cardsGate?.close();
    await subgraphs?.close();
    await database?.close();
  });

  async function chargeForNewCard(amount = 1_500) {
    const merchant = await seed.user('merchant');
    const owner = await seed.user('user');
    const card = await seed.card({ ownerId: owner.id, issuerId: merchant.id, amount: 5_000 });
    const merchantBearer = await issuer.bearer({ userId: merchant.id, role: 'merchant' });
    const charge = await createCharge(router.graphqlUrl, merchantBearer, card.id, amount);
    const ownerBearer = await issuer.bearer({ userId: owner.id, role: 'user', apiKeyId: `key_final_${owner.id}` });
    return { merchantBearer, ownerBearer, charge };
  }

  const released = () => {
    const stats = router.gateway.stats();
    return stats.clientSubscriptions === 0 && stats.apiKeyReservations === 0 && stats.upstream.subscriptions === 0;
  };

  it('sends REFUNDED, then complete, over WebSocket, and releases the subscription, its slot and the upstream', async () => {
    const { merchantBearer, ownerBearer, charge } = await chargeForNewCard();
    const client = wsClient(router.wsUrl, ownerBearer);
    try {
      const watch = watchCharge(client, charge.id);
      await until(() => watch.events.length >= 1, 'the first payload');
      // A partial refund can still change: the subscription goes on.
      const partial = await post(
        router.graphqlUrl,
        {
          query: 'mutation ($id: ID!) { refundCharge(id: $id, amount: 500, idempotencyKey: "partial") { status } }',
          variables: { id: charge.id },
        },
        { authorization: merchantBearer },
      );
      expect(partial.body.errors).toBeUndefined();
      await until(() => statuses(watch).includes('PARTIALLY_REFUNDED'), 'PARTIALLY_REFUNDED');
      expect(watch.completed).toBe(false);

      await refundCharge(router.graphqlUrl, merchantBearer, charge.id);
      await until(() => watch.completed, 'complete after REFUNDED');
      expect(statuses(watch)).toEqual(['AUTHORIZED', 'PARTIALLY_REFUNDED', 'REFUNDED']);
      expect(watch.errors).toEqual([]);
      await until(released, 'everything released');
    } finally {
      await client.dispose();
    }
  });

  it('re-reads once more when the final state is reported while a re-read is in flight, so the last payload is REFUNDED', async () => {
    const { merchantBearer, ownerBearer, charge } = await chargeForNewCard();
    const client = wsClient(router.wsUrl, ownerBearer);
    try {
      const watch = watchCharge(client, charge.id);
      await until(() => watch.events.length >= 1, 'the first payload');
      // The partial refund's re-read reads the charge, then waits at cards with that state.
      cardsGate.hold();
      const partial = await post(
        router.graphqlUrl,
        {
          query: 'mutation ($id: ID!) { refundCharge(id: $id, amount: 500, idempotencyKey: "in-flight") { status } }',
          variables: { id: charge.id },
        },
        { authorization: merchantBearer },
      );
      expect(partial.body.errors).toBeUndefined();
      await until(() => cardsGate.counts.held >= 1, 'the re-read waiting at cards');
      // The rest is refunded, and the upstream reports REFUNDED while that re-read is still out.
      await refundCharge(router.graphqlUrl, merchantBearer, charge.id);
      await until(() => router.gateway.stats().upstream.final === 1, 'the final state reported upstream');
      cardsGate.release();
      await until(() => watch.completed || watch.errors.length > 0, 'complete');
      // The in-flight re-read resolved PARTIALLY_REFUNDED: the subscription does not end on it
      // (it used to, and the client never learnt the charge was refunded in full).
      expect(statuses(watch).at(-1)).toBe('REFUNDED');
      expect(watch.errors).toEqual([]);
      await until(released, 'everything released');
    } finally {
      cardsGate.release();
      await client.dispose();
    }
  });

  it('answers a subscription to a charge already REFUNDED or DECLINED with its state, then complete', async () => {
    const refunded = await chargeForNewCard();
    await refundCharge(router.graphqlUrl, refunded.merchantBearer, refunded.charge.id);
    const declined = await chargeForNewCard(9_000);
    expect(declined.charge.status).toBe('DECLINED');
    for (const { ownerBearer, charge } of [refunded, declined]) {
      const client = wsClient(router.wsUrl, ownerBearer);
      try {
        // Two clients at once share one upstream subscription; both complete.
        const watches = [watchCharge(client, charge.id), watchCharge(client, charge.id)];
        await until(() => watches.every((w) => w.completed || w.errors.length > 0), `complete for ${charge.status}`);
        for (const watch of watches) {
          expect(watch.errors).toEqual([]);
          expect(statuses(watch)).toEqual([charge.status === 'DECLINED' ? 'DECLINED' : 'REFUNDED']);
        }
        await until(released, 'everything released');
        // A later subscriber completes too (the upstream is opened again for it).
        const later = watchCharge(client, charge.id);
        await until(() => later.completed || later.errors.length > 0, 'the later subscriber to complete');
        expect(later.events).toHaveLength(1);
      } finally {
        await client.dispose();
      }
    }
  });

  it('ends an SSE stream with complete after the final state', async () => {
    const { merchantBearer, ownerBearer, charge } = await chargeForNewCard();
    const response = await fetch(router.sseUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream', authorization: ownerBearer },
      body: JSON.stringify({ query: 'subscription ($id: ID!) { chargeUpdated(id: $id) { id status } }', variables: { id: charge.id } }),
    });
    const { received, done } = readEventStream(response);
    await until(() => received.next.length >= 1, 'the first payload');
    await refundCharge(router.graphqlUrl, merchantBearer, charge.id);
    await until(() => received.ended, 'the stream to end');
    await done;
    expect(received.next.map((p) => p.data?.chargeUpdated?.status)).toEqual(['AUTHORIZED', 'REFUNDED']);
    expect(received.completed).toBe(true);
    await until(released, 'everything released');
  });
});
