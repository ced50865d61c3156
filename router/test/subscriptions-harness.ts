import { randomBytes, randomUUID } from 'node:crypto';
import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { authConfigSchema, createAuthService } from '@ghostpay/auth';
import { cardsConfigSchema, createCardsService } from '@ghostpay/cards';
import { chargesConfigSchema, createChargesService } from '@ghostpay/charges';
import type { DatabaseHandle } from '@ghostpay/db';
import { createLogger, createSecretsProvider, envNameForSecret, type Role } from '@ghostpay/platform';
import type { TestTokenIssuer } from '@ghostpay/test-support';
import { type Client, createClient } from 'graphql-ws';
import WebSocket, { WebSocketServer } from 'ws';
import type { RouterDeps } from '../src/router.ts';
import type { RouterSubscriptionsSettings, SubscriptionGateway } from '../src/subscriptions/index.ts';
import { composeRepoSupergraph, post, startRouter } from './router-harness.ts';

export const silent = (service: string) => createLogger({ service, level: 'silent' });

/** The real auth, cards and charges subgraphs on port 0 over one database. */
export async function startRealSubgraphs(database: DatabaseHandle, issuer: TestTokenIssuer, chargesEnv: Record<string, string> = {}) {
  const kek = `k1:${randomBytes(32).toString('base64')}`;
  const authSecrets = createSecretsProvider({ env: { [envNameForSecret('signing-kek')]: kek } });
  const auth = createAuthService({
    database,
    secrets: authSecrets,
    logger: silent('auth'),
    config: authConfigSchema.parse({ NODE_ENV: 'test', LOG_LEVEL: 'silent' }),
    verifier: issuer.verifier,
  });
  const cardSecrets = createSecretsProvider({
    env: {
      [envNameForSecret('pan-encryption-keys')]: `k1:${randomBytes(32).toString('base64')}`,
      [envNameForSecret('pan-fingerprint-key')]: randomBytes(32).toString('base64'),
      [envNameForSecret('cvc-key')]: randomBytes(32).toString('base64'),
    },
  });
  const cards = createCardsService({
    database,
    secrets: cardSecrets,
    logger: silent('cards'),
    config: cardsConfigSchema.parse({ NODE_ENV: 'test', LOG_LEVEL: 'silent' }),
    verifier: issuer.verifier,
  });
  const charges = createChargesService({
    database,
    logger: silent('charges'),
    verifier: issuer.verifier,
    config: chargesConfigSchema.parse({ LOG_LEVEL: 'silent', SETTLEMENT_ENABLED: 'false', SHUTDOWN_TIMEOUT_MS: '200', ...chargesEnv }),
  });
  const urls = {
    auth: `${await auth.start(0)}/graphql`,
    cards: `${await cards.start(0)}/graphql`,
    charges: `${await charges.start(0)}/graphql`,
  };
  return {
    auth,
    cards,
    charges,
    urls,
    async close() {
      await Promise.all([auth.close(), cards.close(), charges.close()]);
      authSecrets.close();
      cardSecrets.close();
    },
  };
}

/** Counts WebSocket upgrades a server accepts, and how many of those sockets are still open. */
export function countUpgrades(server: Server) {
  const counter = { total: 0, open: 0 };
  server.on('upgrade', (_req, socket) => {
    counter.total++;
    counter.open++;
    socket.once('close', () => counter.open--);
  });
  return counter;
}

/** The router's upstream credential in tests: an admin token that may only read charges. */
export function upstreamAuthorization(issuer: TestTokenIssuer) {
  return () => issuer.mint({ userId: 'usr_router', role: 'admin', scopes: ['charges:read'] }).then((t) => `Bearer ${t}`);
}

/**
 * Subscription settings for routers whose tests never need an upstream event: nothing listens at
 * the upstream (port 9 on loopback), and it is not retried during a test.
 */
export function idleSubscriptions(issuer: TestTokenIssuer): RouterSubscriptionsSettings {
  return {
    upstreams: { charges: 'ws://127.0.0.1:9/graphql' },
    upstreamAuthorization: upstreamAuthorization(issuer),
    upstream: { retryInitialDelayMs: 60_000, retryMaxDelayMs: 60_000 },
  };
}

/** A real router (createRouter) serving subscriptions, as main.ts builds it. */
export async function startSubscriptionRouter(options: {
  issuer: TestTokenIssuer;
  urls: Record<string, string>;
  /** @default the charges subgraph of `urls`, over WebSocket */
  upstreams?: Record<string, string>;
  limits?: RouterSubscriptionsSettings['limits'];
  upstream?: RouterSubscriptionsSettings['upstream'];
  /** The router's Redis (rate limits and the per-API-key subscription limit, shared across routers). */
  redis?: RouterDeps['redis'];
}) {
  const router = await startRouter({
    verifier: options.issuer.verifier,
    redis: options.redis,
    urls: options.urls,
    supergraphSdl: composeRepoSupergraph(),
    subscriptions: {
      upstreams: options.upstreams ?? { charges: (options.urls.charges as string).replace(/^http/, 'ws') },
      upstreamAuthorization: upstreamAuthorization(options.issuer),
      limits: options.limits,
      upstream: options.upstream,
    },
  });
  const gateway = router.subscriptions as SubscriptionGateway;
  const url = router.url;
  return {
    router,
    gateway,
    url,
    wsUrl: `${url.replace(/^http/, 'ws')}/graphql`,
    sseUrl: `${url}/graphql/stream`,
    graphqlUrl: `${url}/graphql`,
    close: () => router.close(),
  };
}

export const chargeSelection = 'id status amount refundedAmount card { id status last4 owner { id name } }';
export const chargeUpdatedSubscription = `subscription Watch($id: ID!) { chargeUpdated(id: $id) { ${chargeSelection} } }`;

export interface ChargeEvent {
  id: string;
  status: string;
  amount: number;
  refundedAmount: number;
  card: { id: string; status: string; last4: string; owner: { id: string; name: string } };
}

export interface Collected {
  events: ChargeEvent[];
  payloads: { data?: unknown; errors?: unknown[]; extensions?: Record<string, unknown> }[];
  errors: unknown[];
  completed: boolean;
  stop(): void;
}

export function wsClient(
  wsUrl: string,
  authorization: string,
  options: { lazy?: boolean } = {},
): Client & { closeEvents: { code: number; reason: string }[] } {
  const closeEvents: { code: number; reason: string }[] = [];
  const client = createClient({
    url: wsUrl,
    webSocketImpl: WebSocket,
    connectionParams: { authorization },
    retryAttempts: 0,
    lazy: options.lazy ?? true,
    // Close events are recorded below; graphql-ws would print them to stderr.
    onNonLazyError: () => {},
    on: {
      closed: (event) => {
        const e = event as { code: number; reason: string };
        closeEvents.push({ code: e.code, reason: String(e.reason) });
      },
    },
  });
  return Object.assign(client, { closeEvents });
}

/** Subscribes to chargeUpdated and collects everything that arrives. */
export function watchCharge(client: Client, chargeId: string, query = chargeUpdatedSubscription): Collected {
  const collected: Collected = { events: [], payloads: [], errors: [], completed: false, stop: () => {} };
  collected.stop = client.subscribe<{ chargeUpdated: ChargeEvent }>(
    { query, variables: { id: chargeId } },
    {
      next: (value) => {
        collected.payloads.push(value as Collected['payloads'][number]);
        if (value.data?.chargeUpdated) collected.events.push(value.data.chargeUpdated);
      },
      // Close events are large objects: keep what a client would look at.
      error: (error) =>
        collected.errors.push(
          Array.isArray(error)
            ? error
            : { close: (error as { code?: number }).code, reason: String((error as { reason?: string }).reason) },
        ),
      complete: () => {
        collected.completed = true;
      },
    },
  );
  return collected;
}

/** Reads a GraphQL-over-SSE response, collecting `next` payloads until `complete` or the end. */
export function readEventStream(response: Response) {
  const received = { next: [] as { data?: { chargeUpdated?: { status: string } }; errors?: unknown[] }[], completed: false, ended: false };
  const done = (async () => {
    const reader = (response.body as ReadableStream<Uint8Array>).getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    for (;;) {
      const { value, done: finished } = await reader.read().catch(() => ({ value: undefined, done: true }));
      if (finished) break;
      buffer += decoder.decode(value, { stream: true });
      let boundary = buffer.indexOf('\n\n');
      while (boundary >= 0) {
        const block = buffer.slice(0, boundary);
        buffer = buffer.slice(boundary + 2);
        const event = /^event: (.*)$/m.exec(block)?.[1];
        const data = /^data: (.*)$/m.exec(block)?.[1];
        if (event === 'next' && data) received.next.push(JSON.parse(data));
        if (event === 'complete') received.completed = true;
        boundary = buffer.indexOf('\n\n');
      }
    }
    received.ended = true;
  })();
  return { received, done };
}

export async function until(condition: () => boolean | Promise<boolean>, what: string | (() => string), timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${typeof what === 'function' ? what() : what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

export const statuses = (collected: Collected) => collected.events.map((e) => e.status);

/** Creates a charge through the router as the merchant; returns its id. */
export async function createCharge(graphqlUrl: string, merchantBearer: string, cardId: string, amount = 1_500) {
  const response = await post(
    graphqlUrl,
    {
      query: 'mutation ($input: CreateChargeInput!, $key: String!) { createCharge(input: $input, idempotencyKey: $key) { id status } }',
      variables: { input: { cardId, amount, currency: 'USD' }, key: randomUUID() },
    },
    { authorization: merchantBearer },
  );
  const charge = (response.body.data as { createCharge?: { id: string; status: string } } | null)?.createCharge;
  if (!charge) throw new Error(`createCharge failed: ${JSON.stringify(response.body.errors)}`);
  return charge;
}

export async function refundCharge(graphqlUrl: string, merchantBearer: string, chargeId: string) {
  const response = await post(
    graphqlUrl,
    {
      query: 'mutation ($id: ID!, $key: String!) { refundCharge(id: $id, idempotencyKey: $key) { id status } }',
      variables: { id: chargeId, key: randomUUID() },
    },
    { authorization: merchantBearer },
  );
  const charge = (response.body.data as { refundCharge?: { id: string; status: string } } | null)?.refundCharge;
  if (!charge) throw new Error(`refundCharge failed: ${JSON.stringify(response.body.errors)}`);
  return charge;
}

/** Serves a JWKS over HTTP for child processes (their verifier fetches it like the auth service's). */
export async function serveJwks(issuer: TestTokenIssuer) {
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(issuer.jwks));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/.well-known/jwks.json`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

export type { Role };

/**
 * A plain HTTP proxy in front of a subgraph that can be shut: while shut it answers 503, so
 * the router's fetches to that subgraph fail on demand (a subgraph outage, without stopping it).
 * While held, requests wait (counted in `held`) and are passed on at `release()`: a slow subgraph,
 * to put a fetch in flight on demand.
 */
export async function startGate(target: string) {
  const to = new URL(target);
  /** Requests passed on, refused and waiting, so a test knows which request reached the subgraph. */
  const counts = { passed: 0, refused: 0, held: 0 };
  let open = true;
  let waiting: Array<() => void> | undefined;
  const server = createServer((req, res) => {
    if (waiting) {
      counts.held++;
      waiting.push(() => server.emit('request', req, res));
      return;
    }
    if (!open) {
      counts.refused++;
      req.resume();
      res.writeHead(503, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ errors: [{ message: 'gate shut' }] }));
      return;
    }
    counts.passed++;
    const upstream = httpRequest(
      { host: to.hostname, port: to.port, path: req.url, method: req.method, headers: req.headers },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    upstream.on('error', () => {
      res.writeHead(502);
      res.end();
    });
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}${to.pathname}`,
    counts,
    shut() {
      open = false;
    },
    open() {
      open = true;
    },
    hold() {
      waiting ??= [];
    },
    release() {
      const held = waiting ?? [];
      waiting = undefined;
      for (const pass of held) pass();
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/**
 * A bare graphql-transport-ws peer standing in for charges' upstream: it accepts the router's
 * subscribes and sends a charge's event only when told to (`emit`).
 */
export async function startEventUpstream() {
  const subscriptions: { socket: WebSocket; id: string; chargeId: unknown }[] = [];
  const server = new WebSocketServer({ port: 0, host: '127.0.0.1', handleProtocols: () => 'graphql-transport-ws' });
  server.on('connection', (socket) => {
    socket.on('message', (raw) => {
      const message = JSON.parse(String(raw)) as { type: string; id?: string; payload?: { variables?: { id?: unknown } } };
      if (message.type === 'connection_init') socket.send(JSON.stringify({ type: 'connection_ack' }));
      else if (message.type === 'ping') socket.send(JSON.stringify({ type: 'pong' }));
      else if (message.type === 'subscribe' && message.id) {
        subscriptions.push({ socket, id: message.id, chargeId: message.payload?.variables?.id });
      }
    });
  });
  await new Promise<void>((resolve) => server.once('listening', () => resolve()));
  return {
    url: `ws://127.0.0.1:${(server.address() as AddressInfo).port}/graphql`,
    subscriptions,
    /** Whether the router subscribed to this charge. */
    watching: (chargeId: string) => subscriptions.some((s) => s.chargeId === chargeId),
    /** One status change of a charge (to each upstream subscription the router made for it). */
    emit(chargeId: string) {
      for (const { socket, id } of subscriptions.filter((s) => s.chargeId === chargeId)) {
        socket.send(JSON.stringify({ id, type: 'next', payload: { data: { chargeUpdated: { id: 'x', status: 'AUTHORIZED' } } } }));
      }
    },
    async close() {
      for (const client of server.clients) client.terminate();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
