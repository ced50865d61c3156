import { settleAllDue } from '@ghostpay/charges';
import { createSeed, createTestTokenIssuer, freshDatabase, type TestDatabase, type TestTokenIssuer } from '@ghostpay/test-support';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRouter } from './router-harness.ts';
import {
  createCharge,
  startGate,
  startRealSubgraphs,
  startSubscriptionRouter,
  statuses,
  until,
  watchCharge,
  wsClient,
} from './subscriptions-harness.ts';

describe('chargeUpdated when the charges upstream or a per-event re-read fails (real auth, cards and charges subgraphs)', () => {
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
    router = await startSubscriptionRouter({
      issuer,
      urls: { ...subgraphs.urls, cards: cardsGate.url },
      upstream: { retryInitialDelayMs: 50, retryMaxDelayMs: 200 },
    });
    seed = createSeed(database.db);
  });
  afterAll(async () => {
    await router?.close();
    await cardsGate?.close();
    await subgraphs?.close();
    await database?.close();
  });

  const ownedCharge = async () => {
    const merchant = await seed.user('merchant');
    const owner = await seed.user('user');
    const card = await seed.card({ ownerId: owner.id, issuerId: merchant.id, amount: 5_000 });
    const charge = await createCharge(router.graphqlUrl, await issuer.bearer({ userId: merchant.id, role: 'merchant' }), card.id);
    return { chargeId: charge.id, ownerId: owner.id };
  };

  it('keeps the client subscribed while charges fails the upstream subscribe, and delivers the charge once charges recovers', async () => {
    const { chargeId, ownerId } = await ownedCharge();
    // Charges' subscribe resolver reads the charge's events: without the table it fails, as when
    // charges runs before its database is reachable. graphql-ws answers `next` with errors, then `complete`.
    await database.pool?.query('alter table charges.charge_events rename to charge_events_hidden');
    let hidden = true;
    const client = wsClient(router.wsUrl, await issuer.bearer({ userId: ownerId, role: 'user' }));
    try {
      const watch = watchCharge(client, chargeId);
      await until(() => watch.events.length === 1 || watch.completed || watch.errors.length > 0, 'the first payload');
      // The router has seen the upstream fail and is waiting to subscribe again; the client is still subscribed.
      await until(
        () => router.gateway.stats().upstream.retrying === 1 || watch.completed,
        () => `a failed upstream subscribe; completed: ${watch.completed}`,
      );
      expect(watch.completed).toBe(false);
      expect(watch.errors).toEqual([]);
      expect(watch.payloads).toHaveLength(1);

      await database.pool?.query('alter table charges.charge_events_hidden rename to charge_events');
      hidden = false;
      await settleAllDue(database.db, { delayMs: 0, batchSize: 100 });
      await until(() => statuses(watch).includes('SETTLED') || watch.completed, 'SETTLED');
      expect(statuses(watch)).toEqual(expect.arrayContaining(['AUTHORIZED', 'SETTLED']));
      // The first payload after the outage says events may have been missed.
      expect(watch.payloads[1]?.extensions).toEqual({ missedEvents: true });
      expect(watch.completed).toBe(false);
      expect(watch.errors).toEqual([]);
    } finally {
      if (hidden) await database.pool?.query('alter table charges.charge_events_hidden rename to charge_events');
      await client.dispose();
    }
  });

  it('retries a per-event re-read that failed until it resolves, so the final status arrives without another change', async () => {
    const { chargeId, ownerId } = await ownedCharge();
    const client = wsClient(router.wsUrl, await issuer.bearer({ userId: ownerId, role: 'user' }));
    try {
      const watch = watchCharge(client, chargeId);
      await until(() => watch.events.length === 1, 'the first payload');
      // Two reads reached cards: the subscribe-time query and the re-read of the upstream's
      // first event (its current state). From here only a status change re-reads.
      await until(() => cardsGate.counts.passed >= 2, 'the re-read of the upstream’s first event');
      cardsGate.shut();
      await settleAllDue(database.db, { delayMs: 0, batchSize: 100 });
      await until(() => watch.payloads.length === 2, 'the payload of the settlement that could not be resolved');
      expect(watch.payloads[1]?.errors).toMatchObject([{ extensions: { code: 'SUBGRAPH_UNAVAILABLE' } }]);
      expect(cardsGate.counts.refused).toBeGreaterThanOrEqual(1);

      // Cards is back, and nothing changes on the charge any more: the re-read is retried on its own.
      cardsGate.open();
      await until(
        () => statuses(watch).includes('SETTLED'),
        () => `SETTLED; payloads: ${JSON.stringify(watch.payloads)}`,
      );
      expect(watch.payloads.at(-1)?.extensions).toEqual({ missedEvents: true });
      expect(watch.completed).toBe(false);
      expect(watch.errors).toEqual([]);
    } finally {
      cardsGate.open();
      await client.dispose();
    }
  });
});

describe('chargeUpdated when charges refuses the router’s upstream subscription', () => {
  it('ends the client subscription with the refusal’s code, not a bare complete', async () => {
    const database = await freshDatabase();
    const issuer = await createTestTokenIssuer();
    const subgraphs = await startRealSubgraphs(database, issuer);
    const seed = createSeed(database.db);
    // A service account that cannot see other users' charges: charges answers NOT_FOUND.
    const router = await startRouter({
      verifier: issuer.verifier,
      urls: subgraphs.urls,
      subscriptions: {
        upstreams: { charges: subgraphs.urls.charges.replace(/^http/, 'ws') },
        upstreamAuthorization: () => issuer.bearer({ userId: 'usr_not_admin', role: 'merchant' }),
      },
    });
    const merchant = await seed.user('merchant');
    const owner = await seed.user('user');
    const card = await seed.card({ ownerId: owner.id, issuerId: merchant.id, amount: 5_000 });
    const charge = await createCharge(router.graphqlUrl, await issuer.bearer({ userId: merchant.id, role: 'merchant' }), card.id);
    const client = wsClient(`${router.url.replace(/^http/, 'ws')}/graphql`, await issuer.bearer({ userId: owner.id, role: 'user' }));
    try {
      const watch = watchCharge(client, charge.id);
      await until(() => watch.completed || watch.errors.length > 0, 'the end of the subscription');
      expect(statuses(watch)).toEqual(['AUTHORIZED']);
      expect(watch.payloads.at(-1)).toEqual({
        errors: [{ message: 'The live event source ended this subscription', extensions: { code: 'NOT_FOUND' } }],
      });
      expect(watch.completed).toBe(true);
    } finally {
      await client.dispose();
      await router.close();
      await subgraphs.close();
      await database.close();
    }
  });
});
