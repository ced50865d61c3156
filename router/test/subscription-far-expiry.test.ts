/**
 * A subscription lives as long as its token, however far away that token's expiry is. A Node
 * timer waits at most 2^31 - 1 ms (about 24.8 days); the router clamped the wait to it, so a
 * WebSocket or SSE subscription whose token expires in 30 days (a verifier that accepts tokens
 * that old) ended "Token expired" after 24.8 days. The router re-arms instead, as charges'
 * sockets do. The clock is vitest's fake one (setTimeout and Date only, advancing with real time
 * too, so the sockets and the stand-in subgraphs work as usual); the router, the stand-in
 * subgraphs and the transports are real.
 */
import { createJwtVerifier } from '@ghostpay/platform';
import { createTestTokenIssuer, type TestTokenIssuer, testAudience, testIssuer } from '@ghostpay/test-support';
import { Agent, fetch as undiciFetch } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { type StartedRouter, type StubSubgraphs, startRouter, startStubSubgraphs } from './router-harness.ts';
import { idleSubscriptions, readEventStream, until, watchCharge, wsClient } from './subscriptions-harness.ts';

const dayMs = 86_400_000;
const maxTimerMs = 2_147_483_647;
const watch = 'subscription Watch($id: ID!) { chargeUpdated(id: $id) { id status } }';

describe('a subscription whose token expires in 30 days', () => {
  let issuer: TestTokenIssuer;
  let subgraphs: StubSubgraphs;
  let router: StartedRouter;
  const sseAgent = new Agent({ bodyTimeout: 0 });

  beforeAll(async () => {
    issuer = await createTestTokenIssuer();
    // Tokens up to 60 days old are accepted (the default verifier caps a token's life at one day).
    const verifier = createJwtVerifier({ jwks: issuer.jwks, issuer: testIssuer, audience: testAudience, maxTokenAgeSeconds: 60 * 86_400 });
    subgraphs = await startStubSubgraphs(verifier);
    router = await startRouter({
      verifier,
      urls: subgraphs.urls,
      // The heartbeat is a real interval: pings answered as usual while the fake clock jumps.
      subscriptions: idleSubscriptions(issuer),
    });
  });
  afterEach(() => {
    vi.useRealTimers();
  });
  afterAll(async () => {
    await router?.close();
    await subgraphs?.close();
    await sseAgent.close();
  });

  /** `graphql_errors_total{code="UNAUTHENTICATED"}` on the router's /metrics (an SSE stream's "Token expired" payload adds one). */
  const unauthenticatedErrors = async () => {
    const text = await (await fetch(`${router.url}/metrics`)).text();
    return Number(/^graphql_errors_total\{[^}]*code="UNAUTHENTICATED"[^}]*\} (\d+)$/m.exec(text)?.[1] ?? 0);
  };

  it('stays open past 24.8 days on WebSocket and SSE, and ends "Token expired" at the token’s expiry', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'], shouldAdvanceTime: true });
    const token = await issuer.mint({ userId: 'usr_far', role: 'user', expiresInSeconds: 30 * 86_400 });
    const client = wsClient(`${router.url.replace(/^http/, 'ws')}/graphql`, `Bearer ${token}`);
    const controller = new AbortController();
    try {
      const first = watchCharge(client, 'ch_far_1', watch);
      // No body timeout on the client's side: fetch's 300 s one would end the stream in the jump.
      const response = await undiciFetch(`${router.url}/graphql/stream`, {
        dispatcher: sseAgent,
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'text/event-stream', authorization: `Bearer ${token}` },
        body: JSON.stringify({ query: watch, variables: { id: 'ch_far_1' } }),
        signal: controller.signal,
      });
      expect(response.status).toBe(200);
      const stream = readEventStream(response as unknown as Response);
      await until(() => first.payloads.length === 1 && stream.received.next.length === 1, 'both first payloads');
      const errorsBefore = await unauthenticatedErrors();

      // Past what one timer can wait, well before the token's expiry.
      vi.advanceTimersByTime(maxTimerMs + dayMs);
      // The SSE stream's expiry would have been counted as it was sent (synchronously, in the jump).
      expect(await unauthenticatedErrors()).toBe(errorsBefore);
      // Sent after the jump on the same socket: answered only if the router did not close it in the jump.
      const second = watchCharge(client, 'ch_far_2', watch);
      await until(() => second.payloads.length === 1 || client.closeEvents.length > 0, 'the second first payload or the close');
      expect(client.closeEvents).toEqual([]);
      expect(second.payloads[0]).toEqual({ data: { chargeUpdated: { id: 'ch_far_2', status: 'AUTHORIZED' } } });
      expect(first).toMatchObject({ errors: [], completed: false });
      expect(stream.received).toMatchObject({ ended: false, completed: false });
      expect(stream.received.next).toHaveLength(1);

      // Past the token's own expiry: both transports end as an expiring token ends them.
      vi.advanceTimersByTime(30 * dayMs - (maxTimerMs + dayMs) + 1_000);
      await until(() => client.closeEvents.length > 0 && stream.received.ended, 'both to end at the token’s expiry');
      expect(client.closeEvents).toEqual([{ code: 4401, reason: 'Token expired' }]);
      expect(stream.received.next.slice(1)).toEqual([{ errors: [{ message: 'Token expired', extensions: { code: 'UNAUTHENTICATED' } }] }]);
      expect(stream.received.completed).toBe(true);
      expect(await unauthenticatedErrors()).toBe(errorsBefore + 1);
    } finally {
      controller.abort();
      await client.dispose();
    }
  });
});
