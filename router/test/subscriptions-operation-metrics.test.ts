/**
 * Subscriptions in the router's GraphQL operation metrics. A subscription's first payload and
 * each of its per-event re-reads run the client's selection as a query through Apollo, and were
 * counted in graphql_request_duration_seconds as `operation_type="query"` under the subscription's
 * operation name: the "Top operations" and "operations p95 by type" panels mixed subscription work
 * into queries, and every upstream event added one "query request" per subscriber. Now each
 * subscribe attempt that reached its operation is one observation of `operation_type="subscription"`
 * (WebSocket and SSE alike, with the time to its first answer), and re-reads are counted apart, in
 * graphql_subscription_event_read_duration_seconds{outcome}. Real /metrics; stand-in subgraphs answer
 * the queries, and a bare graphql-ws peer stands in for charges' upstream, sending events on demand.
 */
import { createTestTokenIssuer, type TestTokenIssuer } from '@ghostpay/test-support';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { post, type StubSubgraphs, startRouter, startStubSubgraphs } from './router-harness.ts';
import { readEventStream, startEventUpstream, until, upstreamAuthorization, watchCharge, wsClient } from './subscriptions-harness.ts';

describe('subscriptions in the GraphQL operation metrics', () => {
  let issuer: TestTokenIssuer;
  let subgraphs: StubSubgraphs;
  let upstream: Awaited<ReturnType<typeof startEventUpstream>>;
  let router: Awaited<ReturnType<typeof startRouter>>;
  let user: string;

  beforeAll(async () => {
    issuer = await createTestTokenIssuer();
    subgraphs = await startStubSubgraphs(issuer.verifier);
    upstream = await startEventUpstream();
    router = await startRouter({
      verifier: issuer.verifier,
      urls: subgraphs.urls,
      subscriptions: {
        upstreams: { charges: upstream.url },
        upstreamAuthorization: upstreamAuthorization(issuer),
        upstream: { retryInitialDelayMs: 60_000, retryMaxDelayMs: 60_000 },
      },
    });
    user = await issuer.bearer({ userId: 'usr_ops', role: 'user', apiKeyId: 'key_ops' });
  });
  afterAll(async () => {
    await router?.close();
    await upstream?.close();
    await subgraphs?.close();
  });

  /** graphql_request_duration_seconds counts by `type name`, and event re-reads by outcome, off the real /metrics. */
  const scrape = async () => {
    const text = await (await fetch(`${router.url}/metrics`)).text();
    const operations: Record<string, number> = {};
    for (const [, labels, value] of text.matchAll(/^graphql_request_duration_seconds_count\{([^}]*)\} (\d+)$/gm)) {
      const name = /operation_name="([^"]*)"/.exec(labels!)?.[1];
      const type = /operation_type="([^"]*)"/.exec(labels!)?.[1];
      operations[`${type} ${name}`] = Number(value);
    }
    const reads: Record<string, number> = {};
    for (const [, outcome, value] of text.matchAll(
      /^graphql_subscription_event_read_duration_seconds_count\{[^}]*outcome="([^"]*)"[^}]*\} (\d+)$/gm,
    )) {
      reads[outcome!] = Number(value);
    }
    return { operations, reads };
  };
  const added = (before: Record<string, number>, after: Record<string, number>) =>
    Object.fromEntries(Object.entries(after).flatMap(([k, v]) => (v !== (before[k] ?? 0) ? [[k, v - (before[k] ?? 0)]] : [])));

  it('counts each subscribe once as a subscription, on both transports, and per-event re-reads apart from operations', async () => {
    const before = await scrape();

    // A query over HTTP, for comparison: one query operation.
    const query = await post(router.graphqlUrl, { query: 'query Lookup { charge(id: "ch_ops") { id } }' }, { authorization: user });
    expect(query.status).toBe(200);

    const client = wsClient(`${router.url.replace(/^http/, 'ws')}/graphql`, user);
    const abort = new AbortController();
    try {
      // WebSocket: createdAt differs at every read (the stand-in's clock), so every re-read is sent.
      const ws = watchCharge(client, 'ch_ops', 'subscription Watch($id: ID!) { chargeUpdated(id: $id) { id status createdAt } }');
      await until(() => ws.payloads.length === 1, 'the WebSocket first payload');
      // SSE: the same charge, a selection that never changes, so every re-read is unchanged.
      const response = await fetch(`${router.url}/graphql/stream`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'text/event-stream', authorization: user },
        body: JSON.stringify({
          query: 'subscription Watch($id: ID!) { chargeUpdated(id: $id) { id status } }',
          variables: { id: 'ch_ops' },
        }),
        signal: abort.signal,
      });
      expect(response.status).toBe(200);
      const sse = readEventStream(response);
      await until(() => sse.received.next.length === 1, 'the SSE first payload');
      await until(() => upstream.watching('ch_ops'), 'the shared upstream subscription');
      expect(upstream.subscriptions.filter((s) => s.chargeId === 'ch_ops')).toHaveLength(1);

      // Three upstream events, one at a time: each is one re-read per subscriber (a query at the stand-in charges).
      const hits = subgraphs.hits.charges ?? 0;
      for (let event = 1; event <= 3; event++) {
        upstream.emit('ch_ops');
        await until(() => (subgraphs.hits.charges ?? 0) - hits === 2 * event, `the re-reads of event ${event}`);
      }
      expect(ws.payloads).toHaveLength(4);
      expect(sse.received.next).toHaveLength(1);
    } finally {
      abort.abort();
      await client.dispose();
    }
    await until(() => router.subscriptions?.stats().clientSubscriptions === 0, 'the subscriptions to end');

    const after = await scrape();
    // One query (the HTTP one) and two subscriptions (one per transport): no re-read, no first
    // payload counted as a query.
    expect(added(before.operations, after.operations)).toEqual({ 'query Lookup': 1, 'subscription Watch': 2 });
    expect(added(before.reads, after.reads)).toEqual({ sent: 3, unchanged: 3 });
    // Every outcome is exposed from the start (a rate shows 0, not no data).
    expect(Object.keys(after.reads).sort()).toEqual(['abandoned', 'ended', 'failed', 'sent', 'unchanged']);
  });

  it('counts a re-read that could not be resolved as failed, not as an operation', async () => {
    const client = wsClient(`${router.url.replace(/^http/, 'ws')}/graphql`, user);
    try {
      const watched = watchCharge(client, 'ch_ops_down', 'subscription Outage($id: ID!) { chargeUpdated(id: $id) { id status } }');
      await until(() => watched.payloads.length === 1, 'the first payload');
      await until(() => upstream.watching('ch_ops_down'), 'its upstream subscription');
      const before = await scrape();
      await subgraphs.stop('charges');
      try {
        upstream.emit('ch_ops_down');
        await until(() => watched.payloads.length === 2, 'the payload of the event that could not be resolved');
        expect(watched.payloads[1]).toMatchObject({ data: null, errors: [{ extensions: { code: 'SUBGRAPH_UNAVAILABLE' } }] });
        const after = await scrape();
        expect(added(before.operations, after.operations)).toEqual({});
        expect(added(before.reads, after.reads)).toMatchObject({ failed: expect.any(Number) });
        expect(Object.keys(added(before.reads, after.reads))).toEqual(['failed']);
      } finally {
        await subgraphs.restart('charges');
      }
    } finally {
      await client.dispose();
    }
  });

  it('counts a subscribe refused at its operation as a subscription, not one refused before it', async () => {
    const before = await scrape();
    const client = wsClient(`${router.url.replace(/^http/, 'ws')}/graphql`, user);
    try {
      // Refused by validation: the operation was looked at.
      const invalid = watchCharge(client, 'ch_ops', 'subscription Bad { chargeUpdated(id: "ch_ops") { nope } }');
      await until(() => invalid.errors.length > 0, 'the validation refusal');
      // Refused by its first query (the stand-in charges' database is down): an operation that failed.
      const down = watchCharge(client, 'ch_db_down', 'subscription Down($id: ID!) { chargeUpdated(id: $id) { id } }');
      await until(() => down.errors.length > 0, 'the first query refusal');
    } finally {
      await client.dispose();
    }
    // Refused for its token before any operation: as POST /graphql's 401, no operation.
    const response = await fetch(`${router.url}/graphql/stream`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream', authorization: 'Bearer not.a.token' },
      body: JSON.stringify({ query: 'subscription Stranger { chargeUpdated(id: "ch_ops") { id } }' }),
    });
    expect(response.status).toBe(401);
    await response.arrayBuffer();
    const operations = added(before.operations, (await scrape()).operations);
    // graphql-js names no operation of a document that failed validation, as over HTTP.
    expect(operations).toEqual({ 'subscription (anonymous)': 1, 'subscription Down': 1 });
  });
});
