/**
 * graphql_errors_total counts the errors the router returns, the same way on every transport.
 * The router's own SSE refusals (token, rate limit, body) were counted, but the refusals the
 * subscription gateway sends itself were not, on either transport: WebSocket `connection_init`
 * refused for its token, a `subscribe` refused by the rate limit, the per-connection or per-key
 * limit, parsing or validation, nor an SSE request refused for its shape or by the gateway. A
 * subscription's queries were counted per execution instead, so a re-read retried on a backoff
 * counted its errors at every retry although the client got them once. Each case below is sent
 * over POST /graphql (where it applies), SSE and WebSocket; each must add exactly its code, once.
 * Real /metrics; stand-in subgraphs; a bare graphql-ws peer sends upstream events on demand.
 */
import { createTestTokenIssuer, type TestTokenIssuer } from '@ghostpay/test-support';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { post, type StubSubgraphs, startRouter, startStubSubgraphs } from './router-harness.ts';
import { readEventStream, startEventUpstream, until, upstreamAuthorization, watchCharge, wsClient } from './subscriptions-harness.ts';

const watch = 'subscription Watch($id: ID!) { chargeUpdated(id: $id) { id status } }';

describe('graphql_errors_total over POST /graphql, SSE and WebSocket', () => {
  let issuer: TestTokenIssuer;
  let subgraphs: StubSubgraphs;
  let upstream: Awaited<ReturnType<typeof startEventUpstream>>;
  let router: Awaited<ReturnType<typeof startRouter>>;

  beforeAll(async () => {
    issuer = await createTestTokenIssuer();
    subgraphs = await startStubSubgraphs(issuer.verifier);
    upstream = await startEventUpstream();
    router = await startRouter({
      verifier: issuer.verifier,
      urls: subgraphs.urls,
      // The breaker never opens: a re-read retried during an outage fails with the same error (sent once).
      env: { ROUTER_BREAKER_FAILURES: '1000' },
      // Keys named key_spent_… have a per-minute limit of 0: every request of theirs is refused.
      apiKeyLookup: async (apiKeyId) => (apiKeyId.startsWith('key_spent_') ? { rateLimitPerMinute: 0, revoked: false } : undefined),
      subscriptions: {
        upstreams: { charges: upstream.url },
        upstreamAuthorization: upstreamAuthorization(issuer),
        upstream: { retryInitialDelayMs: 60_000, retryMaxDelayMs: 60_000 },
        limits: { maxPerConnection: 1, maxPerApiKey: 1 },
      },
    });
  });
  afterAll(async () => {
    await router?.close();
    await upstream?.close();
    await subgraphs?.close();
  });

  let keys = 0;
  /** A caller of its own (the limits are per user): user `usr_codes_<n>` with API key `key_<prefix>_<n>`. */
  const caller = (prefix = 'fresh') => {
    const n = ++keys;
    return issuer.bearer({ userId: `usr_codes_${n}`, role: 'user', apiKeyId: `key_${prefix}_${n}` });
  };
  const wsUrl = () => `${router.url.replace(/^http/, 'ws')}/graphql`;

  const scrape = async () => {
    const text = await (await fetch(`${router.url}/metrics`)).text();
    const counts: Record<string, number> = {};
    for (const [, code, value] of text.matchAll(/^graphql_errors_total\{[^}]*code="([^"]*)"[^}]*\} (\d+)$/gm))
      counts[code!] = Number(value);
    return counts;
  };
  /** The codes `action` added to graphql_errors_total. */
  const countedBy = async (action: () => Promise<unknown>) => {
    const before = await scrape();
    await action();
    const after = await scrape();
    return Object.fromEntries(Object.entries(after).flatMap(([k, v]) => (v !== (before[k] ?? 0) ? [[k, v - (before[k] ?? 0)]] : [])));
  };

  /** An SSE request, read to its end (a refusal is a JSON body, or one `next` with the errors then `complete`). */
  const sse = async (authorization: string, query: string, headers: Record<string, string> = {}) => {
    const response = await fetch(`${router.url}/graphql/stream`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream', authorization, ...headers },
      body: JSON.stringify({ query, variables: { id: 'ch_codes' } }),
    });
    return { status: response.status, text: await response.text() };
  };
  /** A WebSocket subscribe that is refused: the graphql-ws `error` (or the close, for connection_init). */
  const wsRefused = async (authorization: string, query: string) => {
    const client = wsClient(wsUrl(), authorization);
    try {
      const watched = watchCharge(client, 'ch_codes', query);
      await until(() => watched.errors.length > 0 || watched.payloads.length > 0, 'an answer');
      return watched.errors[0];
    } finally {
      await client.dispose();
    }
  };

  it('counts a token refused the same way on each transport', async () => {
    const bad = 'Bearer not.a.token';
    expect(
      await countedBy(async () =>
        expect((await post(router.graphqlUrl, { query: '{ __typename }' }, { authorization: bad })).status).toBe(401),
      ),
    ).toEqual({
      UNAUTHENTICATED: 1,
    });
    expect(await countedBy(async () => expect((await sse(bad, watch)).status).toBe(401))).toEqual({ UNAUTHENTICATED: 1 });
    // The WebSocket's connection_init refused: close 4401, as SSE's 401.
    expect(await countedBy(async () => expect(await wsRefused(bad, watch)).toMatchObject({ close: 4401 }))).toEqual({ UNAUTHENTICATED: 1 });
  });

  it('counts the per-minute rate limit the same way on each transport', async () => {
    const refused = { RATE_LIMITED: 1 };
    expect(
      await countedBy(async () =>
        expect((await post(router.graphqlUrl, { query: '{ __typename }' }, { authorization: await caller('spent') })).status).toBe(429),
      ),
    ).toEqual(refused);
    expect(await countedBy(async () => expect((await sse(await caller('spent'), watch)).status).toBe(429))).toEqual(refused);
    expect(
      await countedBy(async () =>
        expect(await wsRefused(await caller('spent'), watch)).toMatchObject([{ extensions: { code: 'RATE_LIMITED' } }]),
      ),
    ).toEqual(refused);
  });

  it('counts the last payload of an SSE stream the router ends itself (the token expired), as any later payload', async () => {
    // Over SSE the end is an error in a payload returned to the client (a WebSocket gets close 4401, no error).
    const n = ++keys;
    const shortLived = `Bearer ${await issuer.mint({ userId: `usr_codes_${n}`, role: 'user', apiKeyId: `key_expiring_${n}`, expiresInSeconds: 2 })}`;
    let text = '';
    expect(
      await countedBy(async () => {
        const answer = await sse(shortLived, watch);
        expect(answer.status).toBe(200);
        text = answer.text;
      }),
    ).toEqual({ UNAUTHENTICATED: 1 });
    expect(text).toContain('"message":"Token expired","extensions":{"code":"UNAUTHENTICATED"}');
    expect(text).toContain('event: complete');
  });

  it('counts parse and validation failures the same way on each transport', async () => {
    for (const [code, query] of [
      ['GRAPHQL_PARSE_FAILED', 'subscription {'],
      ['GRAPHQL_VALIDATION_FAILED', 'subscription { chargeUpdated(id: "ch_codes") { nope } }'],
    ] as const) {
      const user = await caller();
      const httpQuery = query.replace('subscription', 'query').replace('chargeUpdated', 'charge');
      expect(await countedBy(() => post(router.graphqlUrl, { query: httpQuery }, { authorization: user })), `POST ${code}`).toEqual({
        [code]: 1,
      });
      expect(await countedBy(() => sse(user, query)), `SSE ${code}`).toEqual({ [code]: 1 });
      expect(await countedBy(() => wsRefused(user, query)), `WebSocket ${code}`).toEqual({ [code]: 1 });
    }
  });

  it('counts the request checks of each transport: a method POST refuses, an Accept SSE refuses', async () => {
    const user = await caller();
    const put = await countedBy(async () => {
      const response = await fetch(router.graphqlUrl, { method: 'PUT', headers: { authorization: user } });
      expect(response.status).toBe(405);
      await response.arrayBuffer();
    });
    expect(put).toEqual({ BAD_USER_INPUT: 1 });
    expect(await countedBy(async () => expect((await sse(user, watch, { accept: 'application/json' })).status).toBe(406))).toEqual({
      BAD_USER_INPUT: 1,
    });
    // Apollo's own HTTP-level refusal (CSRF prevention), answered before any plugin ran.
    const csrf = await countedBy(async () => {
      const response = await fetch(`${router.graphqlUrl}?query=${encodeURIComponent('{ __typename }')}`, {
        headers: { authorization: user },
      });
      expect(response.status).toBe(400);
      expect(await response.text()).toContain('Cross-Site Request Forgery');
    });
    expect(csrf).toEqual({ BAD_USER_INPUT: 1 });
  });

  it('counts the subscription limits the same way on both transports: per user, per connection', async () => {
    // Per user (1 here): a second subscription of the user is refused, over either transport.
    for (const transport of ['SSE', 'WebSocket'] as const) {
      const user = await caller();
      const holder = wsClient(wsUrl(), user);
      try {
        const held = watchCharge(holder, 'ch_codes', watch);
        await until(() => held.payloads.length === 1, 'the held subscription');
        const counted = await countedBy(async () => {
          if (transport === 'SSE') expect((await sse(user, watch)).text).toContain('RATE_LIMITED');
          else expect(await wsRefused(user, watch)).toMatchObject([{ extensions: { code: 'RATE_LIMITED' } }]);
        });
        expect(counted, transport).toEqual({ RATE_LIMITED: 1 });
      } finally {
        await holder.dispose();
      }
    }
    // Per WebSocket (1 here): a second subscribe on one connection (one user each, under its limit).
    const client = wsClient(wsUrl(), await caller());
    try {
      const held = watchCharge(client, 'ch_codes', watch);
      await until(() => held.payloads.length === 1, 'the held subscription');
      const counted = await countedBy(async () => {
        const second = watchCharge(client, 'ch_codes', watch);
        await until(() => second.errors.length > 0, 'the refusal');
        expect(second.errors[0]).toMatchObject([{ extensions: { code: 'RATE_LIMITED' } }]);
      });
      expect(counted).toEqual({ RATE_LIMITED: 1 });
    } finally {
      await client.dispose();
    }
    await until(() => router.subscriptions?.stats().clientSubscriptions === 0, 'the subscriptions to end');
  });

  it('counts a first query failed on our side once on each transport, as over POST', async () => {
    const user = await caller();
    const query = 'subscription Down($id: ID!) { chargeUpdated(id: $id) { id } }';
    const downSse = async () => {
      const response = await fetch(`${router.url}/graphql/stream`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'text/event-stream', authorization: user },
        body: JSON.stringify({ query, variables: { id: 'ch_db_down' } }),
      });
      return response.text();
    };
    expect(
      await countedBy(() => post(router.graphqlUrl, { query: '{ charge(id: "ch_db_down") { id } }' }, { authorization: user })),
    ).toEqual({
      SERVICE_UNAVAILABLE: 1,
    });
    expect(await countedBy(downSse)).toEqual({ SERVICE_UNAVAILABLE: 1 });
    const client = wsClient(wsUrl(), user);
    try {
      const counted = await countedBy(async () => {
        const down = watchCharge(client, 'ch_db_down', query);
        await until(() => down.errors.length > 0, 'the refusal');
      });
      expect(counted).toEqual({ SERVICE_UNAVAILABLE: 1 });
    } finally {
      await client.dispose();
    }
  });

  it('counts the errors of a later payload once per client it is sent to, not at every retry of its re-read', async () => {
    const wsUser = await caller();
    const sseUser = await caller();
    const client = wsClient(wsUrl(), wsUser);
    const abort = new AbortController();
    try {
      const ws = watchCharge(client, 'ch_codes_outage', watch);
      await until(() => ws.payloads.length === 1, 'the WebSocket first payload');
      const response = await fetch(`${router.url}/graphql/stream`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'text/event-stream', authorization: sseUser },
        body: JSON.stringify({ query: watch, variables: { id: 'ch_codes_outage' } }),
        signal: abort.signal,
      });
      const stream = readEventStream(response);
      await until(() => stream.received.next.length === 1, 'the SSE first payload');
      await until(() => upstream.watching('ch_codes_outage'), 'the upstream subscription');
      await subgraphs.stop('charges');
      try {
        const counted = await countedBy(async () => {
          upstream.emit('ch_codes_outage');
          await until(() => ws.payloads.length === 2 && stream.received.next.length === 2, 'the payloads of the unresolved event');
          // Each re-read is retried after 1 s and fails the same way: nothing new is sent.
          await new Promise((resolve) => setTimeout(resolve, 1_500));
        });
        expect(ws.payloads[1]).toMatchObject({ errors: [{ extensions: { code: 'SUBGRAPH_UNAVAILABLE' } }] });
        expect(stream.received.next[1]).toMatchObject({ errors: [{ extensions: { code: 'SUBGRAPH_UNAVAILABLE' } }] });
        expect(ws.payloads).toHaveLength(2);
        expect(counted).toEqual({ SUBGRAPH_UNAVAILABLE: 2 });
      } finally {
        await subgraphs.restart('charges');
      }
    } finally {
      abort.abort();
      await client.dispose();
    }
  });
});
