/**
 * A subscription whose document validates and whose variables coerce can still give its field an
 * argument value the field refuses: a nullable variable with a default (`$id: ID = "…"`, which
 * validation allows where `ID!` is expected) sent as an explicit `null`. The router computes the
 * field's arguments itself (the upstream key), and graphql-js throws there. That throw escaped the
 * subscribe: graphql-ws closed the whole WebSocket with 4500 (and the error's message outside
 * production), ending the client's other subscriptions on it, and the SSE request failed without
 * a code. It is the client's mistake: BAD_USER_INPUT, as for variables that do not coerce, and the
 * socket stays open. Stand-in subgraphs; nothing is opened upstream.
 */
import { createTestTokenIssuer, type TestTokenIssuer } from '@ghostpay/test-support';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type StubSubgraphs, startRouter, startStubSubgraphs } from './router-harness.ts';
import { idleSubscriptions, readEventStream, until, watchCharge, wsClient } from './subscriptions-harness.ts';

const nullDefaulted = 'subscription Watch($id: ID = "ch_default") { chargeUpdated(id: $id) { id status } }';
const refusal = { message: 'Argument "id" of non-null type "ID!" must not be null.', extensions: { code: 'BAD_USER_INPUT' } };

describe('a subscription argument the field refuses (explicit null for a defaulted variable)', () => {
  let issuer: TestTokenIssuer;
  let subgraphs: StubSubgraphs;
  let router: Awaited<ReturnType<typeof startRouter>>;
  let user: string;

  beforeAll(async () => {
    issuer = await createTestTokenIssuer();
    subgraphs = await startStubSubgraphs(issuer.verifier);
    router = await startRouter({ verifier: issuer.verifier, urls: subgraphs.urls, subscriptions: idleSubscriptions(issuer) });
    user = await issuer.bearer({ userId: 'usr_args', role: 'user', apiKeyId: 'key_args' });
  });
  afterAll(async () => {
    await router?.close();
    await subgraphs?.close();
  });

  it('is refused over WebSocket with BAD_USER_INPUT, and the socket and its other subscriptions stay open', async () => {
    const client = wsClient(`${router.url.replace(/^http/, 'ws')}/graphql`, user);
    try {
      const open = watchCharge(client, 'ch_open', 'subscription Watch($id: ID!) { chargeUpdated(id: $id) { id status } }');
      await until(() => open.payloads.length === 1, 'the first payload of the open subscription');

      const firstAnswer = (variables: Record<string, unknown>) =>
        new Promise<unknown>((resolve) => {
          client.subscribe(
            { query: nullDefaulted, variables },
            { next: (value) => resolve({ next: value }), error: (error) => resolve(error), complete: () => resolve('completed') },
          );
        });
      expect(await firstAnswer({ id: null })).toEqual([refusal]);

      // Nothing else happened to the socket: no close, the open subscription still open, and
      // the socket still serves a new one (the defaulted variable, when omitted).
      expect(await firstAnswer({})).toEqual({ next: { data: { chargeUpdated: { id: 'ch_default', status: 'AUTHORIZED' } } } });
      expect(client.closeEvents).toEqual([]);
      expect(open.completed).toBe(false);
      expect(open.errors).toEqual([]);
      expect(router.subscriptions?.stats().clientSubscriptions).toBe(2);
    } finally {
      await client.dispose();
    }
  });

  it('is answered over SSE with one payload holding BAD_USER_INPUT, then complete', async () => {
    const response = await fetch(`${router.url}/graphql/stream`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream', authorization: user },
      body: JSON.stringify({ query: nullDefaulted, variables: { id: null } }),
    });
    expect(response.status).toBe(200);
    const { received, done } = readEventStream(response);
    await done;
    expect(received.next).toEqual([{ data: null, errors: [refusal] }]);
    expect(received.completed).toBe(true);
  });
});
