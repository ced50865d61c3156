import { once } from 'node:events';
import { settleAllDue } from '@ghostpay/charges';
import {
  createSeed,
  createTestTokenIssuer,
  freshDatabase,
  redisUrl,
  type TestDatabase,
  type TestTokenIssuer,
} from '@ghostpay/test-support';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { rateLimitRedisOptions } from '../src/rate-limiter.ts';
import {
  chargeUpdatedSubscription,
  createCharge,
  readEventStream,
  startRealSubgraphs,
  startSubscriptionRouter,
  statuses,
  until,
  watchCharge,
  wsClient,
} from './subscriptions-harness.ts';

describe('subscription limits, expiry, keep-alive and Server-Sent Events', () => {
  let database: TestDatabase;
  let issuer: TestTokenIssuer;
  let subgraphs: Awaited<ReturnType<typeof startRealSubgraphs>>;
  let seed: ReturnType<typeof createSeed>;
  const routers: Awaited<ReturnType<typeof startSubscriptionRouter>>[] = [];

  const router = async (limits: Parameters<typeof startSubscriptionRouter>[0]['limits'] = {}) => {
    const started = await startSubscriptionRouter({
      issuer,
      urls: subgraphs.urls,
      limits,
    });
    routers.push(started);
    return started;
  };

  /** A charge on a fresh card and its owner's user id. */
  const ownedCharge = async (graphqlUrl: string) => {
    const merchant = await seed.user('merchant');
    const owner = await seed.user('user');
    const card = await seed.card({ ownerId: owner.id, issuerId: merchant.id, amount: 5_000 });
    const charge = await createCharge(graphqlUrl, await issuer.bearer({ userId: merchant.id, role: 'merchant' }), card.id);
    return { chargeId: charge.id, ownerId: owner.id };
  };

  beforeAll(async () => {
    database = await freshDatabase({ poolSize: 20 });
    issuer = await createTestTokenIssuer();
    subgraphs = await startRealSubgraphs(database, issuer);
    seed = createSeed(database.db);
  });
  afterAll(async () => {
    for (const r of routers) await r.close();
    await subgraphs?.close();
    await database?.close();
  });

  it('refuses a subscription over the per-connection limit with RATE_LIMITED and keeps the others', async () => {
    const r = await router({ maxPerConnection: 2 });
    const { chargeId, ownerId } = await ownedCharge(r.graphqlUrl);
    const client = wsClient(r.wsUrl, await issuer.bearer({ userId: ownerId, role: 'user' }));
    try {
      const first = watchCharge(client, chargeId);
      const second = watchCharge(client, chargeId);
      await until(() => first.events.length === 1 && second.events.length === 1, 'two subscriptions');
      const third = watchCharge(client, chargeId);
      await until(() => third.errors.length > 0, 'the refusal');
      expect(third.errors).toMatchObject([[{ extensions: { code: 'RATE_LIMITED' } }]]);
      expect(first.completed || second.completed).toBe(false);
    } finally {
      await client.dispose();
    }
  });

  it('refuses a subscription over the per-API-key limit across connections', async () => {
    const r = await router({ maxPerApiKey: 2 });
    const { chargeId, ownerId } = await ownedCharge(r.graphqlUrl);
    const bearer = await issuer.bearer({ userId: ownerId, role: 'user', apiKeyId: 'key_shared' });
    const clients = [wsClient(r.wsUrl, bearer), wsClient(r.wsUrl, bearer), wsClient(r.wsUrl, bearer)];
    try {
      const a = watchCharge(clients[0]!, chargeId);
      const b = watchCharge(clients[1]!, chargeId);
      await until(() => a.events.length === 1 && b.events.length === 1, 'two subscriptions');
      const c = watchCharge(clients[2]!, chargeId);
      await until(() => c.errors.length > 0, 'the refusal');
      expect(c.errors).toMatchObject([[{ extensions: { code: 'RATE_LIMITED' } }]]);
      // A slot frees up when one ends.
      a.stop();
      await until(() => r.gateway.stats().clientSubscriptions === 1, 'the first to end');
      const d = watchCharge(clients[2]!, chargeId);
      await until(() => d.events.length === 1 || d.errors.length > 0, 'the next subscription');
      expect(d.errors).toEqual([]);
    } finally {
      await Promise.all(clients.map((c) => c.dispose()));
    }
  });

  it("counts a user's subscriptions together, whichever of their API keys each token came from", async () => {
    const r = await router({ maxPerApiKey: 2 });
    const { chargeId, ownerId } = await ownedCharge(r.graphqlUrl);
    // Three keys of one user: a key more is no more subscriptions. Another user keeps theirs.
    const keys = await Promise.all(['a', 'b', 'c'].map((n) => issuer.bearer({ userId: ownerId, role: 'user', apiKeyId: `key_own_${n}` })));
    const clients = keys.map((bearer) => wsClient(r.wsUrl, bearer));
    const stranger = await ownedCharge(r.graphqlUrl);
    const strangerClient = wsClient(r.wsUrl, await issuer.bearer({ userId: stranger.ownerId, role: 'user', apiKeyId: 'key_stranger' }));
    try {
      const a = watchCharge(clients[0]!, chargeId);
      const b = watchCharge(clients[1]!, chargeId);
      await until(() => a.events.length === 1 && b.events.length === 1, 'two subscriptions');
      const c = watchCharge(clients[2]!, chargeId);
      await until(() => c.errors.length > 0 || c.events.length > 0, 'the answer to the third');
      expect(c.errors).toMatchObject([
        [{ message: 'Too many subscriptions for this user (at most 2)', extensions: { code: 'RATE_LIMITED' } }],
      ]);
      const other = watchCharge(strangerClient, stranger.chargeId);
      await until(() => other.events.length === 1 || other.errors.length > 0, "the other user's subscription");
      expect(other.errors).toEqual([]);
    } finally {
      await Promise.all([...clients, strangerClient].map((c) => c.dispose()));
    }
  });

  it.skipIf(!redisUrl())('holds the per-API-key limit across routers sharing Redis', async () => {
    const redisClients = [new Redis(redisUrl(), rateLimitRedisOptions(1_000)), new Redis(redisUrl(), rateLimitRedisOptions(1_000))];
    await Promise.all(redisClients.map((redis) => once(redis, 'ready')));
    const [a, b] = await Promise.all(
      redisClients.map(async (redis) => {
        const started = await startSubscriptionRouter({
          issuer,
          urls: subgraphs.urls,
          limits: { maxPerApiKey: 2 },
          redis,
        });
        return started;
      }),
    );
    const { chargeId, ownerId } = await ownedCharge(a!.graphqlUrl);
    const bearer = await issuer.bearer({ userId: ownerId, role: 'user', apiKeyId: `key_replicas_${Date.now()}` });
    const clients = [wsClient(a!.wsUrl, bearer), wsClient(b!.wsUrl, bearer)];
    try {
      const first = watchCharge(clients[0]!, chargeId);
      const second = watchCharge(clients[0]!, chargeId);
      await until(() => first.events.length === 1 && second.events.length === 1, 'two subscriptions on the first router');
      // The second router holds none of this key's subscriptions, yet the key is at its limit.
      const third = watchCharge(clients[1]!, chargeId);
      await until(() => third.errors.length > 0 || third.events.length > 0, 'the answer on the second router');
      expect(third.errors).toMatchObject([[{ extensions: { code: 'RATE_LIMITED' } }]]);
      // One ends on the first router: the second router may take its slot.
      first.stop();
      await until(() => a!.gateway.stats().clientSubscriptions === 1, 'the first to end');
      const fourth = watchCharge(clients[1]!, chargeId);
      await until(() => fourth.events.length === 1 || fourth.errors.length > 0, 'the next subscription');
      expect(fourth.errors).toEqual([]);
    } finally {
      await Promise.all(clients.map((c) => c.dispose()));
      for (const router of [a, b]) await router?.close();
      for (const redis of redisClients) redis.disconnect();
    }
  });

  it('ends the connection with 4401 "Token expired" when the token expires', async () => {
    const r = await router();
    const { chargeId, ownerId } = await ownedCharge(r.graphqlUrl);
    const token = await issuer.mint({ userId: ownerId, role: 'user', expiresInSeconds: 2 });
    const client = wsClient(r.wsUrl, `Bearer ${token}`);
    try {
      const watch = watchCharge(client, chargeId);
      await until(() => watch.events.length === 1, 'the first event');
      await until(() => client.closeEvents.length > 0, 'the close', 5_000);
      expect(client.closeEvents[0]).toEqual({ code: 4401, reason: 'Token expired' });
      await until(() => r.gateway.stats().clientSubscriptions === 0, 'the subscription to be released');
    } finally {
      await client.dispose();
    }
  });

  it('closes a connection without subscriptions after the idle timeout with 4408', async () => {
    const r = await router({ idleTimeoutMs: 300 });
    const { ownerId } = await ownedCharge(r.graphqlUrl);
    const socket = new WebSocket(r.wsUrl, 'graphql-transport-ws');
    const closed = new Promise<{ code: number; reason: string }>((resolve) =>
      socket.once('close', (code, reason) => resolve({ code, reason: reason.toString() })),
    );
    socket.once('open', async () =>
      socket.send(
        JSON.stringify({ type: 'connection_init', payload: { authorization: await issuer.bearer({ userId: ownerId, role: 'user' }) } }),
      ),
    );
    expect(await closed).toEqual({ code: 4408, reason: 'Idle timeout' });
  });

  it('terminates a peer that stops answering pings', async () => {
    const r = await router({ keepAliveMs: 200 });
    const { ownerId } = await ownedCharge(r.graphqlUrl);
    // autoPong off: this peer never answers the router's pings, like a vanished client.
    const socket = new WebSocket(r.wsUrl, 'graphql-transport-ws', { autoPong: false });
    const closed = new Promise<number>((resolve) => socket.once('close', (code) => resolve(code)));
    socket.once('open', async () =>
      socket.send(
        JSON.stringify({ type: 'connection_init', payload: { authorization: await issuer.bearer({ userId: ownerId, role: 'user' }) } }),
      ),
    );
    // 1006: the router terminated the socket (no close frame) for the missing pongs. Nothing else
    // ends it: an answering peer stays, and the idle timeout would close with 4408.
    expect(await closed).toBe(1006);
  });

  it('serves the same subscription over Server-Sent Events, and refuses one without a token with 401', async () => {
    const r = await router();
    const { chargeId, ownerId } = await ownedCharge(r.graphqlUrl);
    const anonymous = await fetch(r.sseUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
      body: JSON.stringify({ query: chargeUpdatedSubscription, variables: { id: chargeId } }),
    });
    expect(anonymous.status).toBe(401);
    expect(await anonymous.json()).toMatchObject({ errors: [{ extensions: { code: 'UNAUTHENTICATED' } }] });

    const controller = new AbortController();
    const response = await fetch(r.sseUrl, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        accept: 'text/event-stream',
        authorization: await issuer.bearer({ userId: ownerId, role: 'user' }),
      },
      body: JSON.stringify({ query: chargeUpdatedSubscription, variables: { id: chargeId } }),
      signal: controller.signal,
    });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toContain('text/event-stream');
    const stream = readEventStream(response);
    try {
      await until(() => stream.received.next.length === 1, 'the first SSE event');
      await settleAllDue(database.db, { delayMs: 0, batchSize: 100 });
      await until(() => stream.received.next.length === 2, 'the SETTLED SSE event');
      expect(stream.received.next.map((p) => p.data?.chargeUpdated?.status)).toEqual(['AUTHORIZED', 'SETTLED']);
      expect(r.gateway.stats().clientSubscriptions).toBe(1);
    } finally {
      controller.abort();
    }
    // The client going away ends the subscription and its upstream.
    await until(
      () => r.gateway.stats().clientSubscriptions === 0 && r.gateway.stats().upstream.subscriptions === 0,
      'cleanup after disconnect',
    );
  });

  it("refuses someone else's charge over SSE too", async () => {
    const r = await router();
    const { chargeId } = await ownedCharge(r.graphqlUrl);
    const stranger = await seed.user('user');
    const response = await fetch(r.sseUrl, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        accept: 'text/event-stream',
        authorization: await issuer.bearer({ userId: stranger.id, role: 'user' }),
      },
      body: JSON.stringify({ query: chargeUpdatedSubscription, variables: { id: chargeId } }),
    });
    const stream = readEventStream(response);
    await stream.done;
    expect(stream.received.next).toMatchObject([{ errors: [{ extensions: { code: 'NOT_FOUND' } }] }]);
    expect(stream.received.completed).toBe(true);
  });

  it('completes every subscription and closes with 1001 when the router shuts down', async () => {
    const r = await router();
    const { chargeId, ownerId } = await ownedCharge(r.graphqlUrl);
    // Not lazy: the client keeps its socket after the last complete, so the router's close code shows.
    const client = wsClient(r.wsUrl, await issuer.bearer({ userId: ownerId, role: 'user' }), { lazy: false });
    try {
      const watch = watchCharge(client, chargeId);
      await until(() => watch.events.length === 1, 'the first event');
      await r.close();
      await until(() => client.closeEvents.length > 0, 'the close');
      expect(watch.completed).toBe(true);
      expect(client.closeEvents[0]).toEqual({ code: 1001, reason: 'Router shutting down' });
      expect(r.gateway.stats().upstream.subscriptions).toBe(0);
    } finally {
      await client.dispose();
    }
  });

  it('releases subscriptions whose clients leave while they are still starting', async () => {
    const r = await router();
    const { chargeId, ownerId } = await ownedCharge(r.graphqlUrl);
    const bearer = await issuer.bearer({ userId: ownerId, role: 'user' });
    const clients = Array.from({ length: 5 }, () => wsClient(r.wsUrl, bearer));
    for (const client of clients) watchCharge(client, chargeId);
    const aborts = Array.from({ length: 5 }, () => new AbortController());
    const requests = aborts.map((controller) =>
      fetch(r.sseUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'text/event-stream', authorization: bearer },
        body: JSON.stringify({ query: chargeUpdatedSubscription, variables: { id: chargeId } }),
        signal: controller.signal,
      }).catch(() => undefined),
    );
    // Leave once the router has the subscribes in hand, before their first query answers.
    await until(() => r.gateway.stats().webSockets === 5, 'the sockets');
    await new Promise((resolve) => setTimeout(resolve, 5));
    for (const controller of aborts) controller.abort();
    await Promise.all(clients.map((c) => c.dispose()));
    await Promise.all(requests);
    await until(() => {
      const stats = r.gateway.stats();
      return stats.clientSubscriptions === 0 && stats.apiKeyReservations === 0 && stats.upstream.subscriptions === 0;
    }, 'every subscription, API-key reservation and upstream to be released');
  });

  it('refuses queries and unknown fields on the subscription endpoints', async () => {
    const r = await router();
    const { chargeId, ownerId } = await ownedCharge(r.graphqlUrl);
    const client = wsClient(r.wsUrl, await issuer.bearer({ userId: ownerId, role: 'user' }));
    try {
      const query = watchCharge(client, chargeId, 'query ($id: ID!) { charge(id: $id) { id } }');
      const unknown = watchCharge(client, chargeId, 'subscription ($id: ID!) { chargeUpdated(id: $id) { nope } }');
      await until(() => query.errors.length > 0 && unknown.errors.length > 0, 'both refusals');
      expect(query.errors).toMatchObject([[{ extensions: { code: 'BAD_USER_INPUT' } }]]);
      expect(unknown.errors).toMatchObject([[{ extensions: { code: 'GRAPHQL_VALIDATION_FAILED' } }]]);
      expect(statuses(query)).toEqual([]);
    } finally {
      await client.dispose();
    }
  });
});
