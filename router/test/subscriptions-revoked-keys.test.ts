/**
 * Open subscriptions whose API key auth revokes, or whose token expires, end on their own: a
 * quiet subscription (no upstream event, so no per-event query to refuse it) used to stay open
 * for as long as its client liked, holding its slot of the key's subscription limit. The router
 * asks its cached key lookup (auth.api_keys) about every key with open subscriptions each
 * `revocationCheckMs`; a revoked key's WebSockets close with 4401 and its SSE streams get an
 * UNAUTHENTICATED payload, then `complete`. Real PostgreSQL (auth.api_keys), real Redis for the
 * subscription slots when the run has one, stand-in subgraphs (the first payload comes from the
 * stand-in charges; nothing upstream ever sends an event).
 */
import { once } from 'node:events';
import { apiKeys, newId } from '@ghostpay/db';
import {
  createSeed,
  createTestTokenIssuer,
  freshDatabase,
  redisUrl,
  type TestDatabase,
  type TestTokenIssuer,
} from '@ghostpay/test-support';
import { eq } from 'drizzle-orm';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKeyLookup } from '../src/api-keys.ts';
import { rateLimitRedisOptions } from '../src/rate-limiter.ts';
import { type StubSubgraphs, startRouter, startStubSubgraphs } from './router-harness.ts';
import { idleSubscriptions, readEventStream, until, watchCharge, wsClient } from './subscriptions-harness.ts';

const lookupTtlMs = 200;
const revocationCheckMs = 100;
/** The lookup's cache, one check interval, and room for a loaded machine: far below "never". */
const endsWithinMs = 5_000;
const revokedMessage = 'The API key of this token has been revoked';
const watch = 'subscription Watch($id: ID!) { chargeUpdated(id: $id) { id status } }';
const sseHeaders = { 'content-type': 'application/json', accept: 'text/event-stream' };

describe('open subscriptions of a revoked API key or an expired token', () => {
  let database: TestDatabase;
  let issuer: TestTokenIssuer;
  let subgraphs: StubSubgraphs;
  let redis: Redis | undefined;
  let router: Awaited<ReturnType<typeof startRouter>>;
  /** Every key the router's lookup was asked about, in order. */
  const asked: string[] = [];

  /** A key row in auth.api_keys and a token for it. */
  const keyWithToken = async (expiresInSeconds?: number) => {
    const user = await createSeed(database.db).user('user');
    const keyId = newId('key');
    await database.db.insert(apiKeys).values({ id: keyId, userId: user.id, prefix: keyId.slice(-10), secretHash: 'x' });
    const token = await issuer.mint({ userId: user.id, role: 'user', apiKeyId: keyId, expiresInSeconds });
    return { keyId, userId: user.id, bearer: `Bearer ${token}` };
  };
  const revoke = (keyId: string) => database.db.update(apiKeys).set({ revokedAt: new Date() }).where(eq(apiKeys.id, keyId));
  const reservations = () => router.subscriptions?.stats().apiKeyReservations;
  /** The user's leases in Redis (shared by every router; subscriptions count per user), when the run has Redis. */
  const leases = async (userId: string) => (redis ? await redis.zcard(`ghostpay:subs:user:${userId}`) : 0);
  const wsUrl = () => `${router.url.replace(/^http/, 'ws')}/graphql`;
  const openSse = (bearer: string, chargeId: string, signal: AbortSignal) =>
    fetch(`${router.url}/graphql/stream`, {
      method: 'POST',
      headers: { ...sseHeaders, authorization: bearer },
      body: JSON.stringify({ query: watch, variables: { id: chargeId } }),
      signal,
    });

  beforeAll(async () => {
    database = await freshDatabase({ poolSize: 4 });
    issuer = await createTestTokenIssuer();
    subgraphs = await startStubSubgraphs(issuer.verifier);
    if (redisUrl()) {
      redis = new Redis(redisUrl(), rateLimitRedisOptions(1_000));
      await once(redis, 'ready');
    }
    const idle = idleSubscriptions(issuer);
    const lookup = createApiKeyLookup(database, { ttlMs: lookupTtlMs });
    router = await startRouter({
      verifier: issuer.verifier,
      urls: subgraphs.urls,
      redis,
      apiKeyLookup: (apiKeyId) => {
        asked.push(apiKeyId);
        return lookup(apiKeyId);
      },
      subscriptions: { ...idle, limits: { revocationCheckMs } },
    });
  });
  afterAll(async () => {
    await router?.close();
    redis?.disconnect();
    await subgraphs?.close();
    await database?.close();
  });

  it('closes the WebSockets of a revoked key with 4401 and frees their slots; other keys keep theirs', async () => {
    const revoked = await keyWithToken();
    const kept = await keyWithToken();
    const [revokedClient, keptClient] = [wsClient(wsUrl(), revoked.bearer), wsClient(wsUrl(), kept.bearer)];
    try {
      const watched = watchCharge(revokedClient, 'ch_quiet_ws', watch);
      const other = watchCharge(keptClient, 'ch_quiet_ws', watch);
      await until(() => watched.payloads.length === 1 && other.payloads.length === 1, 'both first payloads');
      const before = reservations() ?? 0;
      if (redis) expect(await leases(revoked.userId)).toBe(1);

      await revoke(revoked.keyId);
      // Quiet: no upstream event will ever come to re-run its query and refuse it.
      await until(() => revokedClient.closeEvents.length > 0, 'the revoked key’s socket to close', endsWithinMs);
      expect(revokedClient.closeEvents).toEqual([{ code: 4401, reason: revokedMessage }]);
      expect(watched.errors).toEqual([{ close: 4401, reason: revokedMessage }]);
      await until(() => reservations() === before - 1, 'its slot to be freed');
      if (redis) await until(async () => (await leases(revoked.userId)) === 0, 'its lease in Redis to be removed');

      // Several checks later, the other key's subscription is still open and was sent nothing more.
      await new Promise((resolve) => setTimeout(resolve, lookupTtlMs + 3 * revocationCheckMs));
      expect(keptClient.closeEvents).toEqual([]);
      expect(other).toMatchObject({ errors: [], completed: false });
      expect(other.payloads).toHaveLength(1);
      if (redis) expect(await leases(kept.userId)).toBe(1);
    } finally {
      await Promise.all([revokedClient.dispose(), keptClient.dispose()]);
    }
  });

  it('ends the SSE streams of a revoked key with an UNAUTHENTICATED payload, then complete, and frees their slots', async () => {
    const revoked = await keyWithToken();
    const controller = new AbortController();
    const response = await openSse(revoked.bearer, 'ch_quiet_sse', controller.signal);
    expect(response.status).toBe(200);
    const stream = readEventStream(response);
    try {
      await until(() => stream.received.next.length === 1, 'the first payload');
      if (redis) expect(await leases(revoked.userId)).toBe(1);
      const before = reservations() ?? 0;

      await revoke(revoked.keyId);
      await until(() => stream.received.ended, 'the stream to end', endsWithinMs);
      expect(stream.received.next.slice(1)).toEqual([{ errors: [{ message: revokedMessage, extensions: { code: 'UNAUTHENTICATED' } }] }]);
      expect(stream.received.completed).toBe(true);
      await until(() => reservations() === before - 1, 'its slot to be freed');
      if (redis) await until(async () => (await leases(revoked.userId)) === 0, 'its lease in Redis to be removed');
    } finally {
      controller.abort();
    }
  });

  it('asks the cached lookup about each key once per check, however many subscriptions the key holds', async () => {
    const { keyId, bearer } = await keyWithToken();
    const clients = [wsClient(wsUrl(), bearer), wsClient(wsUrl(), bearer)];
    const controller = new AbortController();
    try {
      const watched = [watchCharge(clients[0]!, 'ch_many_1', watch), watchCharge(clients[0]!, 'ch_many_2', watch)];
      watched.push(watchCharge(clients[1]!, 'ch_many_1', watch));
      const stream = readEventStream(await openSse(bearer, 'ch_many_1', controller.signal));
      await until(() => watched.every((w) => w.payloads.length === 1) && stream.received.next.length === 1, 'four first payloads');
      const times = () => asked.filter((k) => k === keyId).length;
      const [from, started] = [times(), performance.now()];
      await new Promise((resolve) => setTimeout(resolve, 10 * revocationCheckMs));
      const [checks, elapsed] = [times() - from, performance.now() - started];
      // Checked (quiet subscriptions run no query that would ask), and once per sweep, not once per subscription.
      expect(checks).toBeGreaterThan(0);
      expect(checks).toBeLessThanOrEqual(Math.floor(elapsed / revocationCheckMs) + 1);
    } finally {
      controller.abort();
      await Promise.all(clients.map((c) => c.dispose()));
    }
  });

  it('ends subscriptions whose token expires: the WebSocket closes 4401 "Token expired", the SSE stream gets an UNAUTHENTICATED payload', async () => {
    const { userId, bearer } = await keyWithToken(2);
    const client = wsClient(wsUrl(), bearer);
    const controller = new AbortController();
    try {
      const watched = watchCharge(client, 'ch_expiring', watch);
      const response = await openSse(bearer, 'ch_expiring', controller.signal);
      const stream = readEventStream(response);
      await until(() => watched.payloads.length === 1 && stream.received.next.length === 1, 'both first payloads');
      if (redis) expect(await leases(userId)).toBe(2);
      const before = reservations() ?? 0;

      await until(() => client.closeEvents.length > 0 && stream.received.ended, 'both to end at the token’s expiry', endsWithinMs);
      expect(client.closeEvents).toEqual([{ code: 4401, reason: 'Token expired' }]);
      expect(stream.received.next.slice(1)).toEqual([{ errors: [{ message: 'Token expired', extensions: { code: 'UNAUTHENTICATED' } }] }]);
      expect(stream.received.completed).toBe(true);
      await until(() => reservations() === before - 2, 'their slots to be freed');
      if (redis) await until(async () => (await leases(userId)) === 0, 'their leases in Redis to be removed');
    } finally {
      controller.abort();
      await client.dispose();
    }
  });
});
