import { describe, expect, it } from 'vitest';
import { withRouter } from './router-harness.ts';
import { idleSubscriptions, until, watchCharge, wsClient } from './subscriptions-harness.ts';

const watch = 'subscription Watch($id: ID!) { chargeUpdated(id: $id) { id status } }';

describe('WebSocket subscribes in the availability SLI', () => {
  const setup = withRouter({ subscriptions: idleSubscriptions, bearer: { userId: 'usr_sli', role: 'user', apiKeyId: 'key_sli' } });

  const wsUrl = () => `${setup.router.url.replace(/^http/, 'ws')}/graphql`;

  /** What the SLI reads off the router's /metrics: requests by route and status, and failed responses below 500. */
  const scrape = async () => {
    const text = await (await fetch(`${setup.router.url}/metrics`)).text();
    const requests: Record<string, number> = {};
    for (const [, labels, value] of text.matchAll(/^http_request_duration_seconds_count\{([^}]*)\} (\d+)$/gm)) {
      const route = /route="([^"]*)"/.exec(labels!)?.[1];
      const status = /status_code="([^"]*)"/.exec(labels!)?.[1];
      if (route === '/graphql/ws') requests[`${/method="([^"]*)"/.exec(labels!)?.[1]} ${status}`] = Number(value);
    }
    const failed = Number(/^router_graphql_server_error_responses_total\{[^}]*\} (\d+)$/m.exec(text)?.[1] ?? 0);
    const buckets = [...text.matchAll(/^http_request_duration_seconds_bucket\{[^}]*route="\/graphql\/ws"[^}]*\} \d+$/gm)].length;
    return { requests, failed, buckets };
  };
  /** The counts added since `before` (only the ones that changed). */
  const added = (before: Record<string, number>, after: Record<string, number>) =>
    Object.fromEntries(Object.entries(after).flatMap(([k, v]) => (v !== (before[k] ?? 0) ? [[k, v - (before[k] ?? 0)]] : [])));

  it('counts each subscribe once as a request of route /graphql/ws: started 200, refused by its code, ours 5xx', async () => {
    const before = await scrape();
    const client = wsClient(wsUrl(), setup.authorization);
    try {
      const started = watchCharge(client, 'ch_sli_ok', watch);
      await until(() => started.payloads.length === 1, 'the first payload');
      // The stand-in charges fails this one on our side: refused with SERVICE_UNAVAILABLE.
      const ours = watchCharge(client, 'ch_db_down', watch);
      await until(() => ours.errors.length > 0, 'the server-side refusal');
      expect(ours.errors).toMatchObject([[{ extensions: { code: 'SERVICE_UNAVAILABLE' } }]]);
      // The caller's own fault.
      const invalid = watchCharge(client, 'ch_sli_ok', 'subscription { chargeUpdated(id: "ch_sli_ok") { nope } }');
      await until(() => invalid.errors.length > 0, 'the validation refusal');
      const notForHttp = watchCharge(client, 'ch_sli_ok', '{ __typename }');
      await until(() => notForHttp.errors.length > 0, 'the refusal of a query');
    } finally {
      await client.dispose();
    }
    // A connection refused for its token is one attempt too (as an SSE request without a valid token is a 401).
    const stranger = wsClient(wsUrl(), 'Bearer not.a.token');
    try {
      const watched = watchCharge(stranger, 'ch_sli_ok', watch);
      await until(() => watched.errors.length > 0, 'the close');
    } finally {
      await stranger.dispose();
    }
    await until(() => setup.router.subscriptions?.stats().clientSubscriptions === 0, 'the subscription to end');

    const after = await scrape();
    expect(added(before.requests, after.requests)).toEqual({ 'GET 200': 1, 'GET 503': 1, 'GET 400': 2, 'GET 401': 1 });
    // The 503 is a failure by its status (the SLI's status_code=~"5.."): not counted again as a failed 200.
    expect(after.failed).toBe(before.failed);
    expect(after.buckets).toBeGreaterThan(0);

    // Ending subscriptions and sockets adds nothing: an attempt is counted once, never its lifetime.
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect((await scrape()).requests).toEqual(after.requests);
  });

  it('counts a subscription that started with a first payload failed on our side as a failed 200, once', async () => {
    // cards down: the charge resolves from charges, its card's nullable usedAt is null with SUBGRAPH_UNAVAILABLE.
    await setup.subgraphs.stop('cards');
    const before = await scrape();
    const client = wsClient(wsUrl(), setup.authorization);
    try {
      const partial = watchCharge(client, 'ch_sli_partial', 'subscription { chargeUpdated(id: "ch_sli_partial") { id card { usedAt } } }');
      await until(() => partial.payloads.length === 1 || partial.errors.length > 0, 'the first payload');
      expect(partial.payloads[0]).toMatchObject({
        data: { chargeUpdated: { id: 'ch_sli_partial', card: { usedAt: null } } },
        errors: [{ extensions: { code: 'SUBGRAPH_UNAVAILABLE' } }],
      });
    } finally {
      await client.dispose();
      await setup.subgraphs.restart('cards');
    }
    const after = await scrape();
    expect(added(before.requests, after.requests)).toEqual({ 'GET 200': 1 });
    expect(after.failed).toBe(before.failed + 1);
  });
});
