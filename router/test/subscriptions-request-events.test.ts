import { describe, expect, it } from 'vitest';
import type { RouterRequestEvent } from '../src/request-events.ts';
import { withRouter } from './router-harness.ts';
import { idleSubscriptions, until, watchCharge, wsClient } from './subscriptions-harness.ts';

/**
 * Subscription traffic reaches analytics like HTTP requests: one request event per subscribe
 * attempt, WebSocket or SSE, accepted or refused, handed to the same `onRequestEvent`.
 * Stand-in subgraphs: each first payload comes from the stand-in charges' `Query.charge`.
 */
describe('request events for subscriptions', () => {
  const events: RouterRequestEvent[] = [];
  const setup = withRouter({
    onRequestEvent: (event) => events.push(event),
    subscriptions: idleSubscriptions,
    bearer: { userId: 'usr_events', role: 'user', apiKeyId: 'key_events' },
  });
  const watch = 'subscription Watch($id: ID!) { chargeUpdated(id: $id) { id status } }';
  const sseHeaders = { 'content-type': 'application/json', accept: 'text/event-stream' };

  const wsUrl = () => `${setup.router.url.replace(/^http/, 'ws')}/graphql`;
  const sseUrl = () => `${setup.router.url}/graphql/stream`;
  /** Events that arrived since `from`, once `count` of them have. */
  const eventsAfter = async (from: number, count: number) => {
    await until(
      () => events.length >= from + count,
      () => `${count} request event(s); got ${JSON.stringify(events.slice(from))}`,
    );
    return events.slice(from);
  };
  /** One tick later than any event of an answer already sent would be handed over. */
  const settled = () => new Promise((resolve) => setTimeout(resolve, 50));

  it('reports a WebSocket subscribe that started, and one refused, as subscription requests of the caller', async () => {
    const from = events.length;
    const client = wsClient(wsUrl(), setup.authorization);
    try {
      const accepted = watchCharge(client, 'ch_ev', watch);
      await until(() => accepted.events.length === 1, 'the first payload');
      const refused = watchCharge(client, 'ch_ev', 'subscription Nope { chargeUpdated(id: "ch_ev") { nope } }');
      await until(() => refused.errors.length > 0, 'the refusal');
      const [first, second] = await eventsAfter(from, 2);
      const caller = { apiKeyId: 'key_events', userId: 'usr_events', role: 'user' };
      expect(first).toMatchObject({ operationType: 'subscription', operationName: 'Watch', httpStatus: 101, errorCodes: [], ...caller });
      expect(first?.requestId).toEqual(expect.any(String));
      expect(first?.latencyMs).toBeGreaterThanOrEqual(0);
      expect(Date.parse(first?.receivedAt ?? '')).not.toBeNaN();
      // Refused before an operation was chosen: no operation name, as over HTTP.
      expect(second).toMatchObject({
        operationType: 'subscription',
        httpStatus: 101,
        errorCodes: ['GRAPHQL_VALIDATION_FAILED'],
        ...caller,
      });
      expect(second?.operationName).toBeUndefined();
    } finally {
      await client.dispose();
    }
    await settled();
    // Ending the subscriptions and the socket reports nothing more: one event per attempt.
    expect(events.length - from).toBe(2);
  });

  it('reports a WebSocket connection refused for its token', async () => {
    const from = events.length;
    const client = wsClient(wsUrl(), 'Bearer not.a.token');
    try {
      const watched = watchCharge(client, 'ch_ev', watch);
      await until(() => watched.errors.length > 0, 'the close');
      const [event] = await eventsAfter(from, 1);
      expect(event).toMatchObject({ operationType: 'subscription', httpStatus: 101, errorCodes: ['UNAUTHENTICATED'] });
      expect(event?.apiKeyId).toBeUndefined();
    } finally {
      await client.dispose();
    }
  });

  it('reports an SSE subscription once, with its status and the request id it answered with', async () => {
    const from = events.length;
    const controller = new AbortController();
    const response = await fetch(sseUrl(), {
      method: 'POST',
      headers: { ...sseHeaders, authorization: setup.authorization, 'x-request-id': 'req-sse-events-1' },
      body: JSON.stringify({ query: watch, variables: { id: 'ch_sse_ev' } }),
      signal: controller.signal,
    });
    try {
      expect(response.status).toBe(200);
      const [event] = await eventsAfter(from, 1);
      expect(event).toMatchObject({
        requestId: 'req-sse-events-1',
        operationType: 'subscription',
        operationName: 'Watch',
        apiKeyId: 'key_events',
        userId: 'usr_events',
        role: 'user',
        httpStatus: 200,
        errorCodes: [],
      });
    } finally {
      controller.abort();
    }
    await until(() => setup.router.subscriptions?.stats().clientSubscriptions === 0, 'the stream to end');
    await settled();
    expect(events.length - from).toBe(1);
  });

  it('counts an SSE stream whose first payload failed on our side as a failed response, once (the SLI), under its own route', async () => {
    const failed = async () => {
      const text = await (await fetch(`${setup.router.url}/metrics`)).text();
      return Number(/^router_graphql_server_error_responses_total\{[^}]*\} (\d+)$/m.exec(text)?.[1] ?? 0);
    };
    const stream = async (id: string) => {
      const from = events.length;
      const controller = new AbortController();
      const response = await fetch(sseUrl(), {
        method: 'POST',
        headers: { ...sseHeaders, authorization: setup.authorization },
        body: JSON.stringify({ query: watch, variables: { id } }),
        signal: controller.signal,
      });
      expect(response.status).toBe(200);
      const [event] = await eventsAfter(from, 1);
      controller.abort();
      await until(() => setup.router.subscriptions?.stats().clientSubscriptions === 0, 'the stream to end');
      return event;
    };
    const before = await failed();
    // The stand-in charges answers SERVICE_UNAVAILABLE for this id: a 200 stream whose first payload is our failure.
    expect(await stream('ch_db_down')).toMatchObject({ httpStatus: 200, errorCodes: ['SERVICE_UNAVAILABLE'] });
    expect(await failed()).toBe(before + 1);
    // A healthy stream and a refusal for the caller's own fault are not.
    expect(await stream('ch_sse_ok')).toMatchObject({ httpStatus: 200, errorCodes: [] });
    const refused = await fetch(sseUrl(), {
      method: 'POST',
      headers: sseHeaders,
      body: JSON.stringify({ query: watch, variables: { id: 'x' } }),
    });
    expect(refused.status).toBe(401);
    await refused.text();
    expect(await failed()).toBe(before + 1);
    // Counted as requests under their own route, which latency panels and alerts leave out (a
    // stream's duration is its lifetime), not under "/" with the 404s.
    const metrics = await (await fetch(`${setup.router.url}/metrics`)).text();
    expect(metrics).toMatch(/^http_request_duration_seconds_count\{[^}]*route="\/graphql\/stream"[^}]*status_code="200"[^}]*\} [1-9]/m);
  });

  it('reports SSE refusals, by the router (401) and by the request checks (406), with their codes', async () => {
    const from = events.length;
    const anonymous = await fetch(sseUrl(), { method: 'POST', headers: sseHeaders, body: JSON.stringify({ query: watch }) });
    expect(anonymous.status).toBe(401);
    await anonymous.text();
    const [unauthenticated] = await eventsAfter(from, 1);
    expect(unauthenticated).toMatchObject({ operationType: 'subscription', httpStatus: 401, errorCodes: ['UNAUTHENTICATED'] });

    const wrongAccept = await fetch(sseUrl(), {
      method: 'POST',
      headers: { ...sseHeaders, accept: 'application/json', authorization: setup.authorization },
      body: JSON.stringify({ query: watch }),
    });
    expect(wrongAccept.status).toBe(406);
    await wrongAccept.text();
    const [, notAcceptable] = await eventsAfter(from, 2);
    expect(notAcceptable).toMatchObject({ httpStatus: 406, errorCodes: ['BAD_USER_INPUT'], apiKeyId: 'key_events' });
  });

  it('keeps caller-chosen ids out of the event when they look like card data, as over HTTP', async () => {
    const from = events.length;
    // Its digits hold a Luhn-valid 15-digit run, so it looks like it holds a PAN.
    const panLikeTrace = '33c23a3968570d926055547748569a80';
    const response = await fetch(sseUrl(), {
      method: 'POST',
      headers: {
        ...sseHeaders,
        accept: 'application/json',
        authorization: setup.authorization,
        'x-request-id': '4111111111111111',
        traceparent: `00-${panLikeTrace}-00f067aa0ba902b7-01`,
      },
      body: '{}',
    });
    await response.text();
    const [event] = await eventsAfter(from, 1);
    expect(event?.requestId).not.toContain('4111111111111111');
    expect(event?.requestId).toBe(response.headers.get('x-request-id'));
    expect(event?.traceId).toBeUndefined();
  });
});
