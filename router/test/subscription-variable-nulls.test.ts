/**
 * An explicit `null` for a defaulted nullable variable that stands where a non-null value is
 * required (`$id: ID = "ch_1"` for `chargeUpdated(id: ID!)`, `$s: Boolean = true` for
 * `@include(if: $s)`) is the client's mistake on the subscription endpoints as on POST /graphql
 * (client-mistakes.test.ts): refused with BAD_USER_INPUT and POST's message, before any subgraph
 * is called, over WebSocket (graphql-ws) and SSE alike; a null where null is allowed still
 * subscribes. The subscription field's own argument: subscription-argument-values.test.ts. Stand-in subgraphs (the first payload comes from the stand-in charges, which counts
 * its hits); nothing upstream listens.
 */
import { describe, expect, it } from 'vitest';
import { withRouter } from './router-harness.ts';
import { idleSubscriptions, readEventStream, until, watchCharge, wsClient } from './subscriptions-harness.ts';

const nullCases = [
  {
    what: '@include(if:) in the selection',
    query: 'subscription ($s: Boolean = true) { chargeUpdated(id: "ch_1") { id status @include(if: $s) } }',
    name: 's',
  },
  {
    what: '@skip(if:) in a fragment the selection spreads',
    query: 'subscription ($s: Boolean = false) { chargeUpdated(id: "ch_1") { ...F } } fragment F on Charge { id status @skip(if: $s) }',
    name: 's',
  },
];

describe('an explicit null for a defaulted variable in a subscription', () => {
  const fixture = withRouter({ subscriptions: idleSubscriptions, bearer: { userId: 'usr_nulls', role: 'user' } });
  const wsUrl = () => `${fixture.router.url.replace(/^http/, 'ws')}/graphql`;
  const refusal = (name: string) => [
    { message: `Variable "$${name}" is null where a non-null value is required`, extensions: { code: 'BAD_USER_INPUT' } },
  ];

  const openSse = (query: string, variables: Record<string, unknown>, signal: AbortSignal) =>
    fetch(`${fixture.router.url}/graphql/stream`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream', authorization: fixture.authorization },
      body: JSON.stringify({ query, variables }),
      signal,
    });

  it.each(nullCases)('is refused over WebSocket with BAD_USER_INPUT, no subgraph called: $what', async ({ query, name }) => {
    const client = wsClient(wsUrl(), fixture.authorization);
    const hits = fixture.subgraphs.hits.charges;
    try {
      const collected = { errors: [] as unknown[], payloads: [] as unknown[] };
      const done = new Promise<void>((resolve) => {
        client.subscribe(
          { query, variables: { [name]: null } },
          {
            next: (value) => void collected.payloads.push(value),
            error: (error) => {
              collected.errors.push(error);
              resolve();
            },
            complete: resolve,
          },
        );
      });
      await done;
      expect(collected).toEqual({ errors: [refusal(name)], payloads: [] });
      expect(fixture.subgraphs.hits.charges).toBe(hits);
      expect(client.closeEvents).toEqual([]);
    } finally {
      await client.dispose();
    }
  });

  it.each(nullCases)('is refused over SSE with BAD_USER_INPUT, no subgraph called: $what', async ({ query, name }) => {
    const hits = fixture.subgraphs.hits.charges;
    const controller = new AbortController();
    try {
      const response = await openSse(query, { [name]: null }, controller.signal);
      const stream = readEventStream(response);
      await until(() => stream.received.ended, 'the refusal');
      expect(stream.received).toEqual({ next: [{ data: null, errors: refusal(name) }], completed: true, ended: true });
      expect(fixture.subgraphs.hits.charges).toBe(hits);
    } finally {
      controller.abort();
    }
  });

  it('still subscribes when null is allowed there or the variable is left to its default', async () => {
    const client = wsClient(wsUrl(), fixture.authorization);
    const controller = new AbortController();
    try {
      const left = watchCharge(
        client,
        'ch_1',
        'subscription ($id: ID!, $s: Boolean = true) { chargeUpdated(id: $id) { id status @include(if: $s) } }',
      );
      const stream = readEventStream(
        await openSse('subscription ($id: ID = "ch_2") { chargeUpdated(id: $id) { id } }', {}, controller.signal),
      );
      await until(() => left.payloads.length === 1 && stream.received.next.length === 1, 'both first payloads');
      expect(left.payloads).toEqual([{ data: { chargeUpdated: { id: 'ch_1', status: 'AUTHORIZED' } } }]);
      expect(stream.received.next).toEqual([{ data: { chargeUpdated: { id: 'ch_2' } } }]);
    } finally {
      controller.abort();
      await client.dispose();
    }
  });
});
