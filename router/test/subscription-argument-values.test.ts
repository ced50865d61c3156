import { describe, expect, it } from 'vitest';
import { withRouter } from './router-harness.ts';
import { idleSubscriptions, readEventStream, until, watchCharge, wsClient } from './subscriptions-harness.ts';

const nullDefaulted = 'subscription Watch($id: ID = "ch_default") { chargeUpdated(id: $id) { id status } }';
// POST /graphql's message for the same mistake (graphql-js's 'Argument "id" of non-null type "ID!" must not be null.' before).
const refusal = { message: 'Variable "$id" is null where a non-null value is required', extensions: { code: 'BAD_USER_INPUT' } };

describe('a subscription argument the field refuses (explicit null for a defaulted variable)', () => {
  const setup = withRouter({ subscriptions: idleSubscriptions, bearer: { userId: 'usr_args', role: 'user', apiKeyId: 'key_args' } });

  it('is refused over WebSocket with BAD_USER_INPUT, and the socket and its other subscriptions stay open', async () => {
    const client = wsClient(`${setup.router.url.replace(/^http/, 'ws')}/graphql`, setup.authorization);
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
      expect(setup.router.subscriptions?.stats().clientSubscriptions).toBe(2);
    } finally {
      await client.dispose();
    }
  });

  it('is answered over SSE with one payload holding BAD_USER_INPUT, then complete', async () => {
    const response = await fetch(`${setup.router.url}/graphql/stream`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream', authorization: setup.authorization },
      body: JSON.stringify({ query: nullDefaulted, variables: { id: null } }),
    });
    expect(response.status).toBe(200);
    const { received, done } = readEventStream(response);
    await done;
    expect(received.next).toEqual([{ data: null, errors: [refusal] }]);
    expect(received.completed).toBe(true);
  });
});
