/**
 * WebSockets that have not authenticated, per client address. An authenticated WebSocket counts
 * against its API key (subscription-websockets-per-key), but until its `connection_init` is
 * accepted a socket has no key: each one lived up to the 5 s init timeout, and one client could
 * hold any number of them open at once. Now one client address (platform's
 * `addressIdentity(clientAddressOf(req, hops))`, as the router's anonymous rate limit keys: an IPv6
 * client by its /64) holds at most `maxUnauthenticatedWebSocketsPerAddress`; the next upgrade is
 * answered 429 `RATE_LIMITED` with `Retry-After`, counted as a refused subscribe attempt.
 * A socket frees its place when it authenticates or closes. Stand-in subgraphs; nothing upstream.
 */
import { createSecretsProvider } from '@ghostpay/platform';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import type { RouterRequestEvent } from '../src/request-events.ts';
import { routerSubscriptionsConfigSchema, routerSubscriptionsSettings } from '../src/subscriptions/index.ts';
import { withRouter } from './router-harness.ts';
import { idleSubscriptions, until } from './subscriptions-harness.ts';

interface Upgrade {
  socket: WebSocket;
  /** 'open', or the HTTP answer that refused the upgrade. */
  answer: Promise<'open' | { status: number; headers: Record<string, string | string[] | undefined>; body: string }>;
  closed: Promise<{ code: number; reason: string }>;
}

describe('unauthenticated WebSockets per client address', () => {
  const events: RouterRequestEvent[] = [];
  const sockets: WebSocket[] = [];
  const setup = withRouter({
    env: { ROUTER_TRUST_PROXY: 'true' },
    onRequestEvent: (event) => events.push(event),
    subscriptions: (issuer) => ({
      ...idleSubscriptions(issuer),
      limits: { maxUnauthenticatedWebSocketsPerAddress: 2, connectionInitTimeoutMs: 3_000 },
    }),
  });
  let wsUrl: string;
  beforeAll(() => {
    wsUrl = `${setup.router.url.replace(/^http/, 'ws')}/graphql`;
  });
  afterAll(() => {
    for (const socket of sockets) socket.terminate();
  });

  /** A graphql-transport-ws upgrade from `forwardedFor` (the router trusts one proxy hop). */
  const upgrade = (forwardedFor: string): Upgrade => {
    const socket = new WebSocket(wsUrl, 'graphql-transport-ws', { headers: { 'x-forwarded-for': forwardedFor } });
    sockets.push(socket);
    const closed = new Promise<{ code: number; reason: string }>((resolve) =>
      socket.once('close', (code, reason) => resolve({ code, reason: String(reason) })),
    );
    const answer = new Promise<Awaited<Upgrade['answer']>>((resolve, reject) => {
      socket.once('open', () => resolve('open'));
      socket.once('unexpected-response', (_req, res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (text: string) => {
          body += text;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      });
      socket.once('error', (error) => {
        if (!String(error.message).includes('Unexpected server response')) reject(error);
      });
    });
    return { socket, answer, closed };
  };

  /** Sends connection_init; resolves 'ack' or the close that refused it. */
  const authenticate = (socket: WebSocket, authorization: string) =>
    new Promise<'ack' | number>((resolve) => {
      socket.on('message', (data) => {
        if ((JSON.parse(String(data)) as { type: string }).type === 'connection_ack') resolve('ack');
      });
      socket.once('close', (code) => resolve(code));
      socket.send(JSON.stringify({ type: 'connection_init', payload: { authorization } }));
    });

  const metric = async (pattern: RegExp) => {
    const text = await (await fetch(`${setup.router.url}/metrics`)).text();
    return Number(pattern.exec(text)?.[1] ?? 0);
  };

  it('answers the upgrade past the limit 429 RATE_LIMITED, keys IPv6 by its /64, and frees a place on authentication or close', async () => {
    const bearer = await setup.issuer.bearer({ userId: 'usr_addr', role: 'user', apiKeyId: 'key_addr' });
    const refusedBefore = await metric(/^graphql_errors_total\{code="RATE_LIMITED",service="router"\} (\d+)/m);
    const slisBefore = await metric(/^http_request_duration_seconds_count\{[^}]*route="\/graphql\/ws"[^}]*status_code="429"[^}]*\} (\d+)/m);

    // Two addresses of one IPv6 /64 are one client.
    const a = upgrade('2001:db8:1:2::a');
    const b = upgrade('2001:db8:1:2::b');
    expect(await a.answer).toBe('open');
    expect(await b.answer).toBe('open');
    const refused = await upgrade('2001:db8:1:2::c').answer;
    expect(refused).toMatchObject({ status: 429, headers: { 'retry-after': '3' } });
    const body = JSON.parse((refused as { body: string }).body) as { errors: { message: string; extensions: { code: string } }[] };
    expect(body.errors).toEqual([
      {
        message: 'Too many WebSockets waiting to authenticate from this address (at most 2)',
        extensions: { code: 'RATE_LIMITED', retryAfter: 3 },
      },
    ]);

    // Another client (another /64, an IPv4 address) is not affected.
    expect(await upgrade('2001:db8:1:3::a').answer).toBe('open');
    expect(await upgrade('203.0.113.9').answer).toBe('open');

    // An authenticated socket counts against its API key, no longer its address.
    expect(await authenticate(a.socket, bearer)).toBe('ack');
    const c = upgrade('2001:db8:1:2::c');
    expect(await c.answer).toBe('open');
    expect(await upgrade('2001:db8:1:2::d').answer).toMatchObject({ status: 429 });

    // A socket whose connection_init is refused closes, and its place is free again.
    expect(await authenticate(b.socket, 'Bearer not-a-token')).toBe(4401);
    await until(async () => (await upgrade('2001:db8:1:2::e').answer) === 'open', 'a place after a refused connection_init');

    // A socket that never authenticates is closed at the init timeout (graphql-ws, 4408), freeing its place.
    expect((await c.closed).code).toBe(4408);
    await until(async () => (await upgrade('2001:db8:1:2::f').answer) === 'open', 'a place after the init timeout');

    // Each refused upgrade is a refused subscribe attempt: RATE_LIMITED, the SLI's 429, a request event.
    expect(await metric(/^graphql_errors_total\{code="RATE_LIMITED",service="router"\} (\d+)/m)).toBeGreaterThanOrEqual(refusedBefore + 2);
    expect(
      await metric(/^http_request_duration_seconds_count\{[^}]*route="\/graphql\/ws"[^}]*status_code="429"[^}]*\} (\d+)/m),
    ).toBeGreaterThanOrEqual(slisBefore + 2);
    await until(
      () => events.filter((e) => e.operationType === 'subscription' && e.errorCodes.includes('RATE_LIMITED')).length >= 2,
      'the request events of the refused upgrades',
    );
  });

  it('is set by ROUTER_SUBSCRIPTION_MAX_UNAUTHENTICATED_WEBSOCKETS_PER_ADDRESS (default 100)', () => {
    const secrets = createSecretsProvider({ env: {} });
    try {
      const limitsOf = (env: Record<string, string>) =>
        routerSubscriptionsSettings(routerSubscriptionsConfigSchema.parse(env), {}, secrets)?.limits;
      expect(limitsOf({})?.maxUnauthenticatedWebSocketsPerAddress).toBe(100);
      expect(
        limitsOf({ ROUTER_SUBSCRIPTION_MAX_UNAUTHENTICATED_WEBSOCKETS_PER_ADDRESS: '7' })?.maxUnauthenticatedWebSocketsPerAddress,
      ).toBe(7);
      expect(() =>
        routerSubscriptionsConfigSchema.parse({ ROUTER_SUBSCRIPTION_MAX_UNAUTHENTICATED_WEBSOCKETS_PER_ADDRESS: '0' }),
      ).toThrow();
    } finally {
      secrets.close();
    }
  });
});
