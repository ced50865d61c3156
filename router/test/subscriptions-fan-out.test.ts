import { settleAllDue } from '@ghostpay/charges';
import { createSeed, createTestTokenIssuer, freshDatabase, type TestDatabase, type TestTokenIssuer } from '@ghostpay/test-support';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type Collected,
  countUpgrades,
  createCharge,
  startRealSubgraphs,
  startSubscriptionRouter,
  statuses,
  until,
  watchCharge,
  wsClient,
} from './subscriptions-harness.ts';

describe('shared upstream subscriptions', () => {
  let database: TestDatabase;
  let issuer: TestTokenIssuer;
  let subgraphs: Awaited<ReturnType<typeof startRealSubgraphs>>;
  let router: Awaited<ReturnType<typeof startSubscriptionRouter>>;
  let upgrades: ReturnType<typeof countUpgrades>;

  beforeAll(async () => {
    database = await freshDatabase({ poolSize: 30 });
    issuer = await createTestTokenIssuer();
    subgraphs = await startRealSubgraphs(database, issuer);
    upgrades = countUpgrades(subgraphs.charges.server);
    router = await startSubscriptionRouter({
      issuer,
      urls: subgraphs.urls,
      // Small sockets, so the test shows the pool spreading over more than one.
      upstream: { maxSubscriptionsPerSocket: 10 },
    });
  });
  afterAll(async () => {
    await router?.close();
    await subgraphs?.close();
    await database?.close();
  });

  it('serves 200 concurrent subscribers on 20 charges over 2 upstream sockets and delivers every event to each', {
    timeout: 120_000,
  }, async () => {
    const seed = createSeed(database.db);
    const merchant = await seed.user('merchant');
    const merchantBearer = await issuer.bearer({ userId: merchant.id, role: 'merchant' });
    const charges: { id: string; ownerId: string }[] = [];
    for (let i = 0; i < 20; i++) {
      const owner = await seed.user('user');
      const card = await seed.card({ ownerId: owner.id, issuerId: merchant.id, amount: 5_000 });
      const charge = await createCharge(router.graphqlUrl, merchantBearer, card.id);
      charges.push({ id: charge.id, ownerId: owner.id });
    }

    // Ten subscribers per charge, each on its own WebSocket to the router.
    const clients: ReturnType<typeof wsClient>[] = [];
    const watches: { chargeId: string; watch: Collected }[] = [];
    for (const charge of charges) {
      const bearer = await issuer.bearer({ userId: charge.ownerId, role: 'user' });
      for (let i = 0; i < 10; i++) {
        const client = wsClient(router.wsUrl, bearer);
        clients.push(client);
        watches.push({ chargeId: charge.id, watch: watchCharge(client, charge.id) });
      }
    }
    try {
      await until(() => watches.every(({ watch }) => watch.events.length >= 1 || watch.errors.length > 0), 'every first event', 60_000);
      expect(watches.flatMap(({ watch }) => watch.errors)).toEqual([]);
      expect(router.gateway.stats().clientSubscriptions).toBe(200);
      expect(router.gateway.stats().webSockets).toBe(200);
      // One upstream subscription per charge, ten per socket: 2 sockets, counted at the charges subgraph.
      expect(router.gateway.stats().upstream.subscriptions).toBe(20);
      expect(upgrades.open).toBe(2);
      expect(upgrades.total).toBe(2);

      await settleAllDue(database.db, { delayMs: 0, batchSize: 100 });
      await until(() => watches.every(({ watch }) => statuses(watch).includes('SETTLED')), 'SETTLED everywhere', 60_000);
      for (const { chargeId, watch } of watches) {
        expect(statuses(watch)).toEqual(['AUTHORIZED', 'SETTLED']);
        expect(watch.events.every((e) => e.id === chargeId && e.card.status === 'USED' && e.card.last4.length === 4)).toBe(true);
      }
      expect(upgrades.total).toBe(2);
    } finally {
      await Promise.all(clients.map((c) => c.dispose()));
    }
    // The last subscriber leaving ends the upstream subscriptions.
    await until(() => router.gateway.stats().upstream.subscriptions === 0, 'upstream subscriptions to end');
  });
});
