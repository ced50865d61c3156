/**
 * The router's upstream service token is presented once per socket, at `connection_init`, and
 * charges closes the socket when that token expires (4403 "Token expired"). The upstream pool
 * reconnects with a fresh token, resubscribes, and the router re-reads the charge: its clients
 * see no error and miss no state, the final one included, even a change made while the
 * router's upstream was gone. Two-second service tokens keep the rotations fast. Real auth,
 * cards and charges subgraphs over PostgreSQL.
 */
import { settleAllDue } from '@ghostpay/charges';
import { createSeed, createTestTokenIssuer, freshDatabase, type TestDatabase, type TestTokenIssuer } from '@ghostpay/test-support';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SubscriptionGateway } from '../src/subscriptions/index.ts';
import { composeRepoSupergraph, startRouter } from './router-harness.ts';
import { createCharge, refundCharge, startRealSubgraphs, statuses, until, watchCharge, wsClient } from './subscriptions-harness.ts';

describe('chargeUpdated across an expiry of the router’s upstream token', () => {
  let database: TestDatabase;
  let issuer: TestTokenIssuer;
  let subgraphs: Awaited<ReturnType<typeof startRealSubgraphs>>;
  let router: Awaited<ReturnType<typeof startRouter>>;
  /** Service tokens the upstream pool asked for (one per upstream connect). */
  let tokensIssued = 0;
  /** While set, the pool's next token waits for it: the router's upstream stays disconnected. */
  let held: Promise<void> | undefined;

  beforeAll(async () => {
    database = await freshDatabase({ poolSize: 20 });
    issuer = await createTestTokenIssuer();
    subgraphs = await startRealSubgraphs(database, issuer);
    router = await startRouter({
      verifier: issuer.verifier,
      urls: subgraphs.urls,
      supergraphSdl: composeRepoSupergraph(),
      subscriptions: {
        upstreams: { charges: subgraphs.urls.charges.replace(/^http/, 'ws') },
        upstreamAuthorization: async () => {
          tokensIssued++;
          await held;
          // exp is whole seconds: each token lives one to two seconds.
          return `Bearer ${await issuer.mint({ userId: 'usr_router', role: 'admin', scopes: ['charges:read'], expiresInSeconds: 2 })}`;
        },
        upstream: { retryInitialDelayMs: 50, retryMaxDelayMs: 200 },
      },
    });
  });
  afterAll(async () => {
    await router?.close();
    await subgraphs?.close();
    await database?.close();
  });

  it('resubscribes with a fresh token and delivers every state change, the final one made while the upstream was gone', async () => {
    const gateway = router.subscriptions as SubscriptionGateway;
    const seed = createSeed(database.db);
    const merchant = await seed.user('merchant');
    const owner = await seed.user('user');
    const merchantBearer = await issuer.bearer({ userId: merchant.id, role: 'merchant' });
    const card = await seed.card({ ownerId: owner.id, issuerId: merchant.id, amount: 5_000 });
    const charge = await createCharge(router.graphqlUrl, merchantBearer, card.id);
    const client = wsClient(`${router.url.replace(/^http/, 'ws')}/graphql`, await issuer.bearer({ userId: owner.id, role: 'user' }));
    try {
      const watch = watchCharge(client, charge.id);
      await until(
        () => statuses(watch).length === 1 && gateway.stats().upstream.connectedSockets === 1,
        'the first payload and the upstream socket',
      );
      const first = tokensIssued;
      expect(first).toBeGreaterThanOrEqual(1);

      // The first token expires; charges closes the socket; the pool connects again with a new one.
      await until(() => tokensIssued > first && gateway.stats().upstream.connectedSockets === 1, 'a reconnect with a fresh token');
      await settleAllDue(database.db, { delayMs: 0, batchSize: 100 });
      await until(
        () => statuses(watch).includes('SETTLED'),
        () => `SETTLED; payloads: ${JSON.stringify(watch.payloads)}`,
      );

      // The next expiry: the pool's reconnect waits for its token while the charge is refunded in full.
      let release!: () => void;
      held = new Promise<void>((resolve) => (release = resolve));
      const before = tokensIssued;
      await until(() => tokensIssued > before, 'the reconnect after the next expiry');
      expect(gateway.stats().upstream.connectedSockets).toBe(0);
      const refunded = await refundCharge(router.graphqlUrl, merchantBearer, charge.id);
      expect(refunded.status).toBe('REFUNDED');
      held = undefined;
      release();

      await until(
        () => watch.completed || watch.errors.length > 0,
        () => `the end; payloads: ${JSON.stringify(watch.payloads)}`,
      );
      expect(watch.errors).toEqual([]);
      expect(watch.payloads.filter((p) => p.errors)).toEqual([]);
      expect([...new Set(statuses(watch))]).toEqual(['AUTHORIZED', 'SETTLED', 'REFUNDED']);
      // The final state came from the re-read after the reconnect, flagged as such.
      expect(watch.payloads.at(-1)?.extensions).toEqual({ missedEvents: true });
      expect(watch.events.at(-1)).toMatchObject({ status: 'REFUNDED', refundedAmount: 1_500 });
    } finally {
      await client.dispose();
    }
  });
});
