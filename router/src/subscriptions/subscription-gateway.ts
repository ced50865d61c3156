import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { addressIdentity, atExpiry, ErrorCode, GhostPayError, type JwtVerifier, type Principal, sendJson } from '@ghostpay/platform';
import type { DocumentNode, ExecutionArgs, ExecutionResult, GraphQLError, GraphQLSchema } from 'graphql';
import { createHandler as createSseHandler } from 'graphql-sse';
import { useServer as useGraphQLWsServer } from 'graphql-ws/use/ws';
import type { Logger } from 'pino';
import { Gauge, type Registry } from 'prom-client';
import { type WebSocket, WebSocketServer } from 'ws';
import { type PersistedOperation, resolvePersistedQuery } from '../persisted-queries.ts';
import { withoutSchemaSuggestions } from '../schema-suggestions.ts';
import { type EventRead, type ExecuteQuery, openClientSubscription, type SubscriptionPayload } from './client-subscription.ts';
import type { EventStream } from './event-stream.ts';
import { isSseRefusal, readSseRequest } from './sse-request.ts';
import {
  defaultSubscriptionRoutes,
  isPlan,
  planSubscription,
  type SubscriptionRequest,
  type SubscriptionRoute,
} from './subscription-plan.ts';
import { createKeyedPlaces, createLocalSubscriptionSlots, type Reservation, type SubscriptionSlots } from './subscription-slots.ts';
import { createUpstreamPool, type UpstreamPool, type UpstreamPoolOptions } from './upstream-pool.ts';

/** WebSocket close codes this gateway uses (besides graphql-ws's own 44xx codes). */
export const SubscriptionCloseCode = {
  /**
   * `connection_init` had no valid token, the token expired while connected, or auth revoked its
   * API key while connected. Reconnect with a fresh token.
   */
  Unauthorized: 4401,
  /**
   * The token could not be checked (the auth service's signing keys cannot be fetched): the
   * WebSocket "Try Again Later". Not fatal for graphql-ws clients, which retry it.
   */
  TryAgainLater: 1013,
  /** No subscription was active for `idleTimeoutMs`. */
  IdleTimeout: 4408,
  /** The router is shutting down; reconnect (to another replica). */
  GoingAway: 1001,
  /** The token's user already holds `maxWebSocketsPerApiKey` WebSockets on this router (fatal for graphql-ws clients). */
  PolicyViolation: 1008,
} as const;

export interface SubscriptionLimits {
  /** Active subscriptions on one WebSocket. @default 20 */
  maxPerConnection?: number;
  /**
   * Active subscriptions per user (the token's `sub`, whichever of their API keys minted it; the
   * name is older than that), both transports: on this router process, or across replicas with
   * shared `slots`. @default 200
   */
  maxPerApiKey?: number;
  /**
   * Authenticated WebSockets per user (as `maxPerApiKey`) on this router process; the next
   * `connection_init` of that user is closed with 1008. A socket needs a subscription to outlive
   * the idle timeout, so the default is twice the sockets the user's subscriptions could use: one
   * each, and as many again opening or between subscriptions.
   * @default 2 × maxPerApiKey
   */
  maxWebSocketsPerApiKey?: number;
  /**
   * WebSockets of one client address (`addressOf`) that have not authenticated yet: from the
   * upgrade until their `connection_init` is accepted (at most `connectionInitTimeoutMs`). Past it
   * the upgrade is answered 429 `RATE_LIMITED` with `Retry-After`, before any WebSocket exists.
   * Authenticated sockets count per user instead (`maxWebSocketsPerApiKey`).
   * @default 100
   */
  maxUnauthenticatedWebSocketsPerAddress?: number;
  /** A WebSocket with no active subscription is closed (4408) after this long. @default 60000 */
  idleTimeoutMs?: number;
  /** WebSocket ping interval; a peer that has not answered the previous ping is terminated. @default 15000 */
  keepAliveMs?: number;
  /** Time allowed between the upgrade and `connection_init`. @default 5000 */
  connectionInitTimeoutMs?: number;
  /** Largest accepted WebSocket message. @default 65536 */
  maxPayloadBytes?: number;
  /**
   * SSE: bytes of a response waiting in this process for a client that does not read them (beyond
   * what the kernel's socket buffers hold). Past it the response is dropped and its subscription
   * ends. graphql-sse queues every event and keep-alive without bound while a write waits.
   * @default 1048576
   */
  sseMaxBufferedBytes?: number;
  /**
   * SSE: once the subscription ended (its `complete` queued), how long the client has to take the
   * rest of the response before the connection is dropped. @default 10000
   */
  sseEndTimeoutMs?: number;
  /**
   * How often every API key with open subscriptions is asked `checkApiKey` (one sweep per
   * process, one question per key). 0 turns the check off. @default 10000
   */
  revocationCheckMs?: number;
}

export interface SubscriptionGatewayOptions {
  verifier: JwtVerifier;
  /** The supergraph's API schema (what clients may ask), or a getter for hot reloads. */
  schema: GraphQLSchema | (() => GraphQLSchema);
  /** graphql-ws URL per subgraph that serves subscriptions, e.g. `{ charges: 'ws://127.0.0.1:4003/graphql' }`. */
  upstreams: Readonly<Record<string, string>>;
  /** The router's credential for upstream sockets; see the README for why clients' tokens are not used. */
  upstreamAuthorization: UpstreamPoolOptions['authorization'];
  /** Runs the per-event query through the gateway with the client's Authorization. */
  executeQuery: ExecuteQuery;
  logger: Logger;
  registry?: Registry;
  /** @default defaultSubscriptionRoutes (chargeUpdated → charges, Query.charge) */
  routes?: readonly SubscriptionRoute[];
  limits?: SubscriptionLimits;
  /**
   * Where the per-API-key limit is counted: `createRedisSubscriptionSlots` shares it across
   * router replicas. @default this process only (`createLocalSubscriptionSlots`)
   */
  slots?: SubscriptionSlots;
  /** Pool tuning (sockets, backoff). */
  upstream?: Omit<UpstreamPoolOptions, 'urls' | 'authorization' | 'logger'>;
  /** WebSocket path. @default '/graphql' */
  path?: string;
  /**
   * The identity a WebSocket upgrade counts under until it authenticates
   * (`limits.maxUnauthenticatedWebSocketsPerAddress`): the router's is
   * `addressIdentity(clientAddressOf(req, hops))`, as its anonymous rate limit keys.
   * @default addressIdentity of the socket's peer address
   */
  addressOf?: (request: IncomingMessage) => string;
  /**
   * The router's persisted-query manifest operations, named by `extensions.persistedQuery.sha256Hash`
   * as on POST /graphql. With `safelist`, a non-admin may subscribe only to one of them (by
   * hash or exact body; the manifest's text runs), else `PERSISTED_QUERY_NOT_FOUND`.
   * @default none, free-form subscriptions
   */
  persistedQueries?: { operations: ReadonlyMap<string, PersistedOperation>; safelist: boolean };
  /**
   * Asked about each parsed subscription document before it is validated; an error refuses the
   * subscribe with it. The router's limit on repeated fields, which makes graphql-js's overlap
   * check slow, is refused before that check runs, as on POST /graphql. @default none
   */
  checkDocument?: (document: DocumentNode) => GraphQLError | undefined;
  /**
   * Told once per WebSocket subscribe attempt (a `subscribe` message, or a `connection_init`
   * refused) when its first answer goes out: the router's request event and its count in the
   * availability SLI. Must not throw.
   * SSE requests report through `handleSse`'s `onAnswered`. @default none
   */
  onWebSocketAnswered?: (answer: WebSocketSubscribeAnswer) => void;
  /**
   * Asked before each WebSocket `subscribe` is planned: the router's per-minute rate limit (a
   * subscribe runs its first payload's query at once, a request like any other). An error
   * refuses the attempt with it. SSE requests are limited by the router before they reach
   * `handleSse`. @default every subscribe admitted
   */
  admitWebSocketSubscribe?: (principal: Principal, request: IncomingMessage) => Promise<GhostPayError | undefined>;
  /**
   * Asked every `limits.revocationCheckMs` about each API key (token `key_id`) that has open
   * subscriptions: an error (the router's: the key was revoked, from its cached key lookup) ends
   * all of them, each WebSocket of that key closing with 4401 and the error's message, each SSE
   * stream with a last payload holding the error, then `complete`. A quiet subscription has no
   * per-event query to refuse it, so without this it stayed open, holding its slot. A check that
   * throws ends nothing. @default none
   */
  checkApiKey?: (apiKeyId: string) => Promise<GhostPayError | undefined>;
  /**
   * Told after each per-event re-read of an open subscription (the client's selection run again as
   * a query when the upstream reports an event; never the first query, which is the subscribe's
   * answer): what it came to and how long it took. Must not throw. @default none
   */
  onEventRead?: (read: EventRead) => void;
  /**
   * Told the error codes of each payload with errors an open subscription sends after its first (a
   * re-read's, a last payload ending it): errors returned to the client, as the first answer's are
   * in `SubscribeAnswer.errorCodes`; also of the last payload of an SSE stream this gateway ends
   * itself (a token's expiry, a revoked key), which a WebSocket gets as a close code, not as
   * errors (shutdown sends none). Must not throw. @default none
   */
  onErrorsSent?: (codes: string[]) => void;
}

/** The first answer to one subscribe attempt (a first payload or a refusal), for the router's request event. */
export interface SubscribeAnswer {
  /** The name of the operation that was chosen from the document, once one was (as HTTP reports it). */
  operationName?: string;
  /** The refusal's codes, or those of the errors in the first payload (none for a clean one). */
  errorCodes: string[];
  /** SSE: the response's status. WebSocket: 101, its upgrade's. */
  httpStatus: number;
  /**
   * Set when the attempt reached the operation (its document was looked at: persisted query,
   * parsing, validation, the per-key limit, the first query), as a POST /graphql reaches Apollo's
   * pipeline: the seconds from there to its first answer. Unset for an attempt refused before it
   * (token, rate limit, per-connection limit, the SSE request's shape).
   */
  operationSeconds?: number;
}

export interface WebSocketSubscribeAnswer extends SubscribeAnswer {
  /** Refused (a graphql-ws `error`, or the connection closed at `connection_init`), not started. */
  refused: boolean;
  /** The WebSocket's upgrade request (its request id and trace context). */
  request: IncomingMessage;
  /** The connection's caller, when its token verified. */
  principal?: Principal;
  /** `performance.now()` when the message arrived. */
  startedAt: number;
  receivedAt: Date;
}

export interface SubscriptionGateway {
  /** For the HTTP server's `upgrade` event: accepts graphql-transport-ws on `path`, destroys anything else. */
  handleUpgrade(req: IncomingMessage, socket: Socket, head: Buffer): void;
  /**
   * Serves a GraphQL-over-SSE request (distinct connections mode; POST JSON or GET). `body` is
   * the POST body the caller already read, within its size limit, and parsed: this never reads
   * the request stream (graphql-sse's own Node reader buffers a body of any size).
   */
  handleSse(req: IncomingMessage, res: ServerResponse, body: unknown, onAnswered?: (answer: SubscribeAnswer) => void): Promise<void>;
  /** Active client subscriptions and upstream use, for tests and metrics. */
  stats(): {
    clientSubscriptions: number;
    /** Subscriptions counted against API keys (open or starting). */
    apiKeyReservations: number;
    webSockets: number;
    upstream: ReturnType<UpstreamPool['stats']>;
  };
  /** Ends every client subscription (WebSockets close 1001), then the upstream sockets. */
  close(): Promise<void>;
}

interface Caller {
  principal: Principal;
  authorization: string;
}

/** A subscription that started: its stream (first payload queued), for either transport. */
interface Opened {
  stream: EventStream<SubscriptionPayload>;
  document: DocumentNode;
  operationName?: string;
  firstErrorCodes: string[];
  /** From `open` being called to the first payload. */
  operationSeconds: number;
}

interface Refused {
  errors: readonly GraphQLError[];
  /** Set once the document was planned. */
  operationName?: string;
  /** From `open` being called to the refusal. */
  operationSeconds: number;
}

const codesOf = (errors: readonly { extensions?: { code?: unknown } }[] | undefined): string[] =>
  (errors ?? []).map((e) => String(e.extensions?.code ?? ErrorCode.INTERNAL_SERVER_ERROR));

interface ConnectionState {
  caller?: Caller;
  /** Set once the socket counts against its API key's WebSockets; undone when it closes. */
  uncount?: () => void;
  /** Frees the socket's place among its address's unauthenticated WebSockets (once it authenticates, or closes). */
  unpend?: () => void;
  active: number;
  alive: boolean;
  idleTimer?: NodeJS.Timeout;
  /** Cancels the close at the token's expiry (`atExpiry`). */
  disarmExpiry?: () => void;
}

/**
 * Federated subscriptions for a router whose gateway has none: graphql-ws and graphql-sse
 * in front, a shared upstream pool behind, and every event resolved through the gateway as
 * the client. The module is self-contained: the router passes its verifier, API schema and
 * an `executeQuery` and routes upgrades and SSE requests here.
 */
export function createSubscriptionGateway(options: SubscriptionGatewayOptions): SubscriptionGateway {
  const logger = options.logger.child({ component: 'subscriptions' });
  const routes = options.routes ?? defaultSubscriptionRoutes;
  const limits = {
    maxPerConnection: options.limits?.maxPerConnection ?? 20,
    maxPerApiKey: options.limits?.maxPerApiKey ?? 200,
    maxWebSocketsPerApiKey: options.limits?.maxWebSocketsPerApiKey ?? 2 * (options.limits?.maxPerApiKey ?? 200),
    maxUnauthenticatedWebSocketsPerAddress: options.limits?.maxUnauthenticatedWebSocketsPerAddress ?? 100,
    idleTimeoutMs: options.limits?.idleTimeoutMs ?? 60_000,
    keepAliveMs: options.limits?.keepAliveMs ?? 15_000,
    connectionInitTimeoutMs: options.limits?.connectionInitTimeoutMs ?? 5_000,
    maxPayloadBytes: options.limits?.maxPayloadBytes ?? 64 * 1024,
    sseMaxBufferedBytes: options.limits?.sseMaxBufferedBytes ?? 1024 * 1024,
    sseEndTimeoutMs: options.limits?.sseEndTimeoutMs ?? 10_000,
    revocationCheckMs: options.limits?.revocationCheckMs ?? 10_000,
  };
  const path = options.path ?? '/graphql';
  const schemaOf = () => (typeof options.schema === 'function' ? options.schema() : options.schema);
  const pool = createUpstreamPool({ ...options.upstream, urls: options.upstreams, authorization: options.upstreamAuthorization, logger });
  const streams = new Set<EventStream<SubscriptionPayload>>();
  let closing = false;
  let closed: Promise<void> | undefined;

  const activeGauge = options.registry
    ? new Gauge({
        name: 'graphql_subscriptions_active',
        help: 'Client subscriptions open on this router',
        labelNames: ['transport'],
        registers: [options.registry],
      })
    : undefined;
  const upstreamGauge = options.registry
    ? new Gauge({
        name: 'subscription_upstream_sockets',
        help: 'Upstream subscription sockets carrying at least one subscription',
        registers: [options.registry],
        collect() {
          this.set(pool.stats().sockets);
        },
      })
    : undefined;
  void upstreamGauge;

  const slots = options.slots ?? createLocalSubscriptionSlots();
  /**
   * Whose subscriptions and WebSockets a caller's count against: its user's (`user:<sub>`),
   * whichever of their API keys minted the token, as the per-minute rate limit counts
   * (`rateLimitIdentity`): per key, each key a user holds or re-creates would be another full
   * allowance. Also the Redis key of the user's slots (`ghostpay:subs:user:<sub>`).
   */
  const limitedAs = (principal: Principal) => `user:${principal.userId}`;
  const reserveSlot = async (principal: Principal): Promise<Reservation | GhostPayError> =>
    (await slots.acquire(limitedAs(principal), limits.maxPerApiKey)) ??
    new GhostPayError(ErrorCode.RATE_LIMITED, `Too many subscriptions for this user (at most ${limits.maxPerApiKey})`);

  /** Safelist (or a hash naming a manifest operation), then validation: errors as the caller may see them. */
  const planFor = (caller: Caller, request: SubscriptionRequest & { extensions?: unknown }, schema: GraphQLSchema) => {
    const admin = caller.principal.role === 'admin';
    let resolved: SubscriptionRequest = request;
    if (options.persistedQueries) {
      // graphql-ws requires a query string: an empty one with a hash names a manifest operation.
      const named: Record<string, unknown> = { ...request, query: request.query === '' ? undefined : request.query };
      const outcome = resolvePersistedQuery(named, options.persistedQueries.operations, options.persistedQueries.safelist && !admin);
      if (!outcome.ok) return [new GhostPayError(ErrorCode.PERSISTED_QUERY_NOT_FOUND, outcome.message)];
      resolved = outcome.body;
    }
    const plan = planSubscription(schema, routes, resolved, options.checkDocument);
    if (isPlan(plan) || admin) return plan;
    return plan.map((error) => {
      const message = withoutSchemaSuggestions(error.message);
      return message === error.message ? error : new GhostPayError(error.extensions.code as ErrorCode, message);
    });
  };

  /** Shared by both transports: limits, plan, first query, upstream. */
  const open = async (
    caller: Caller,
    request: SubscriptionRequest & { extensions?: unknown },
    transport: 'ws' | 'sse',
    onEnd: () => void,
  ): Promise<Opened | Refused> => {
    const started = performance.now();
    const operationSeconds = () => (performance.now() - started) / 1000;
    if (closing) {
      return {
        errors: [new GhostPayError(ErrorCode.SERVICE_UNAVAILABLE, 'The router is shutting down')],
        operationSeconds: operationSeconds(),
      };
    }
    let schema: GraphQLSchema;
    try {
      schema = schemaOf();
    } catch (error) {
      return {
        errors: [
          error instanceof GhostPayError ? error : new GhostPayError(ErrorCode.SERVICE_UNAVAILABLE, 'The supergraph is not loaded yet'),
        ],
        operationSeconds: operationSeconds(),
      };
    }
    let plan: ReturnType<typeof planFor>;
    try {
      plan = planFor(caller, request, schema);
    } catch (error) {
      // Left to graphql-ws, a throw here closed the whole WebSocket (4500, the error's message
      // outside production) and failed the SSE request with 500: refuse this subscribe only.
      logger.error({ err: error }, 'planning a subscription failed');
      return {
        errors: [new GhostPayError(ErrorCode.INTERNAL_SERVER_ERROR, 'Could not start the subscription')],
        operationSeconds: operationSeconds(),
      };
    }
    if (!isPlan(plan)) return { errors: plan, operationSeconds: operationSeconds() };
    const operationName = plan.operationName;
    const reservation = await reserveSlot(caller.principal);
    if (reservation instanceof GhostPayError) return { errors: [reservation], operationName, operationSeconds: operationSeconds() };
    let ended = false;
    const end = () => {
      if (ended) return;
      ended = true;
      reservation.release();
      activeGauge?.dec({ transport });
      onEnd();
    };
    let stream: EventStream<SubscriptionPayload> | undefined;
    const opened = await openClientSubscription({
      plan,
      authorization: caller.authorization,
      pool,
      executeQuery: options.executeQuery,
      logger,
      onEventRead: options.onEventRead,
      onErrorsSent: options.onErrorsSent,
      onEnd: () => {
        if (stream) streams.delete(stream);
        end();
      },
    }).catch((error: unknown) => {
      logger.error({ err: error }, 'opening a subscription failed');
      return [new GhostPayError(ErrorCode.SERVICE_UNAVAILABLE, 'Could not start the subscription; retry later')] as const;
    });
    if (!('stream' in opened)) {
      reservation.release();
      return { errors: opened, operationName, operationSeconds: operationSeconds() };
    }
    stream = opened.stream;
    activeGauge?.inc({ transport });
    streams.add(stream);
    // Closing began while the first query ran: end at once.
    if (closing) stream.end();
    return {
      stream,
      document: plan.document,
      operationName,
      firstErrorCodes: codesOf(opened.first.errors),
      operationSeconds: operationSeconds(),
    };
  };

  const authenticate = async (header: unknown): Promise<Caller | GhostPayError> => {
    if (typeof header !== 'string' || header === '') return new GhostPayError(ErrorCode.UNAUTHENTICATED, 'Authentication required');
    try {
      const principal = await options.verifier.verifyAuthorization(header);
      if (!principal) return new GhostPayError(ErrorCode.UNAUTHENTICATED, 'Authentication required');
      return { principal, authorization: header };
    } catch (error) {
      return error instanceof GhostPayError ? error : new GhostPayError(ErrorCode.UNAUTHENTICATED, 'Token is invalid');
    }
  };

  // ---- WebSocket (graphql-transport-ws) ----
  const wss = new WebSocketServer({ noServer: true, maxPayload: limits.maxPayloadBytes });
  const states = new WeakMap<WebSocket, ConnectionState>();
  /** Authenticated WebSockets per user (`limitedAs`) on this process. */
  const socketsPerUser = createKeyedPlaces();

  /** WebSockets not (yet) authenticated, per client address identity, on this process. */
  const pendingPerAddress = createKeyedPlaces();
  /** The place each upgraded request holds in `pendingPerAddress`, handed to its connection's state. */
  const pendingOf = new WeakMap<IncomingMessage, () => void>();
  const addressOf = options.addressOf ?? ((request: IncomingMessage) => addressIdentity(request.socket.remoteAddress ?? 'unknown'));

  const armIdle = (ws: WebSocket, state: ConnectionState) => {
    clearTimeout(state.idleTimer);
    if (state.active > 0 || limits.idleTimeoutMs <= 0) return;
    state.idleTimer = setTimeout(() => ws.close(SubscriptionCloseCode.IdleTimeout, 'Idle timeout'), limits.idleTimeoutMs);
    state.idleTimer.unref();
  };

  wss.on('connection', (ws: WebSocket, request: IncomingMessage) => {
    const state: ConnectionState = { active: 0, alive: true, unpend: pendingOf.get(request) };
    states.set(ws, state);
    ws.on('pong', () => {
      state.alive = true;
    });
    ws.once('close', (code: number) => {
      logger.debug({ code, active: state.active }, 'subscription client socket closed');
      clearTimeout(state.idleTimer);
      state.disarmExpiry?.();
      state.uncount?.();
      state.unpend?.();
    });
    armIdle(ws, state);
  });

  const heartbeat = setInterval(() => {
    for (const ws of wss.clients) {
      const state = states.get(ws);
      if (!state) continue;
      if (!state.alive) {
        ws.terminate();
        continue;
      }
      state.alive = false;
      ws.ping();
    }
  }, limits.keepAliveMs);
  heartbeat.unref();

  /** One WebSocket attempt's report, sent once with its first answer. */
  const wsAttempt = (request: IncomingMessage) => {
    const startedAt = performance.now();
    const receivedAt = new Date();
    return {
      answered(principal: Principal | undefined, answer: Omit<SubscribeAnswer, 'httpStatus'> & { refused: boolean }) {
        try {
          options.onWebSocketAnswered?.({ ...answer, httpStatus: 101, request, principal, startedAt, receivedAt });
        } catch (error) {
          logger.warn({ err: error }, 'subscribe answer handler failed');
        }
      },
    };
  };

  interface WsContextValue {
    stream: EventStream<SubscriptionPayload>;
  }

  // biome-ignore lint/correctness/useHookAtTopLevel: graphql-ws's useServer is not a React hook.
  const wsServer = useGraphQLWsServer<Record<string, unknown> | undefined>(
    {
      connectionInitWaitTimeout: limits.connectionInitTimeoutMs,
      async onConnect(ctx) {
        const attempt = wsAttempt(ctx.extra.request);
        const ws = ctx.extra.socket;
        const state = states.get(ws);
        const fromPayload = ctx.connectionParams?.authorization;
        const caller = await authenticate(typeof fromPayload === 'string' ? fromPayload : ctx.extra.request.headers.authorization);
        if (caller instanceof GhostPayError && caller.extensions.code === ErrorCode.SERVICE_UNAVAILABLE) {
          // An outage, not a bad credential (HTTP and SSE answer 503): a code graphql-ws clients retry.
          ws.close(SubscriptionCloseCode.TryAgainLater, caller.message.slice(0, 120));
          attempt.answered(undefined, { errorCodes: [ErrorCode.SERVICE_UNAVAILABLE], refused: true });
          return false;
        }
        if (!state || caller instanceof GhostPayError) {
          // 4401 with the reason rather than graphql-ws's bare 4403: the client knows to get a token.
          ws.close(SubscriptionCloseCode.Unauthorized, caller instanceof GhostPayError ? caller.message.slice(0, 120) : 'Unauthorized');
          attempt.answered(undefined, { errorCodes: [ErrorCode.UNAUTHENTICATED], refused: true });
          return false;
        }
        // Gone while its token was checked: its close already ran, nothing may be armed or counted.
        if (ws.readyState !== ws.OPEN) return false;
        const uncount = socketsPerUser.take(limitedAs(caller.principal), limits.maxWebSocketsPerApiKey);
        if (!uncount) {
          ws.close(SubscriptionCloseCode.PolicyViolation, `Too many WebSockets for this user (at most ${limits.maxWebSocketsPerApiKey})`);
          attempt.answered(caller.principal, { errorCodes: [ErrorCode.RATE_LIMITED], refused: true });
          return false;
        }
        state.uncount = uncount;
        state.caller = caller;
        // Authenticated: it counts against its user now, no longer against its address.
        state.unpend?.();
        state.disarmExpiry = atExpiry(caller.principal, () => ws.close(SubscriptionCloseCode.Unauthorized, 'Token expired'));
        return true;
      },
      async onSubscribe(ctx, _id, payload) {
        const attempt = wsAttempt(ctx.extra.request);
        const ws = ctx.extra.socket;
        const state = states.get(ws);
        const refuse = (errors: readonly GraphQLError[], operation?: { operationName?: string; operationSeconds: number }) => {
          attempt.answered(state?.caller?.principal, {
            operationName: operation?.operationName,
            operationSeconds: operation?.operationSeconds,
            errorCodes: codesOf(errors),
            refused: true,
          });
          return errors;
        };
        if (!state?.caller) return refuse([new GhostPayError(ErrorCode.UNAUTHENTICATED, 'Authentication required')]);
        const refused = await options.admitWebSocketSubscribe?.(state.caller.principal, ctx.extra.request);
        if (refused) return refuse([refused]);
        if (state.active >= limits.maxPerConnection) {
          return refuse([
            new GhostPayError(ErrorCode.RATE_LIMITED, `Too many subscriptions on this connection (at most ${limits.maxPerConnection})`),
          ]);
        }
        // Count it before the first query runs, so concurrent subscribes cannot overshoot.
        state.active++;
        clearTimeout(state.idleTimer);
        let counted = true;
        const release = () => {
          if (!counted) return;
          counted = false;
          state.active--;
          armIdle(ws, state);
        };
        const result = await open(state.caller, payload, 'ws', release);
        if (!('stream' in result)) {
          release();
          return refuse(result.errors, result);
        }
        const { stream, document } = result;
        attempt.answered(state.caller.principal, {
          operationName: result.operationName,
          operationSeconds: result.operationSeconds,
          errorCodes: result.firstErrorCodes,
          refused: false,
        });
        const args: ExecutionArgs = {
          // Not executed by graphql-js: `subscribe` below returns our stream. graphql-ws only reads the document's operation.
          schema: schemaOf(),
          document,
          variableValues: payload.variables ?? undefined,
          operationName: payload.operationName ?? undefined,
          contextValue: { stream } satisfies WsContextValue,
        };
        return args;
      },
      // Our stream yields already formatted results; graphql-ws only forwards them.
      subscribe: (args) => (args.contextValue as WsContextValue).stream as unknown as AsyncGenerator<ExecutionResult>,
      // …as they are: graphql-ws would call `toJSON()` on each error of a payload, which
      // formatted errors do not have, and end the subscription with that TypeError.
      onNext: (_ctx, _id, _payload, _args, result) => result as SubscriptionPayload,
      onError: (_ctx, _id, _payload, errors) =>
        errors.map((e) => ({ message: e.message, extensions: { code: e.extensions?.code ?? ErrorCode.INTERNAL_SERVER_ERROR } })),
    },
    wss,
  );

  // ---- Server-Sent Events (graphql-sse, distinct connections mode) ----
  // graphql-sse's handler over our own Node adapter (not its use/http one, which reads the body unbounded).
  const sse = createSseHandler<IncomingMessage, { res: ServerResponse; answer: Omit<SubscribeAnswer, 'httpStatus'> }>({
    // null: no reservations, one operation per event stream (the "distinct connections" mode).
    authenticate: () => null,
    async onSubscribe(req, params) {
      const answer = req.context.answer;
      const caller = await authenticate(req.headers.get('authorization'));
      if (caller instanceof GhostPayError) {
        answer.errorCodes = [String(caller.extensions.code)];
        const unavailable = caller.extensions.code === ErrorCode.SERVICE_UNAVAILABLE;
        return [
          JSON.stringify({ errors: [caller.toJSON()] }),
          {
            status: unavailable ? 503 : 401,
            statusText: unavailable ? 'Service Unavailable' : 'Unauthorized',
            headers: { 'content-type': 'application/json; charset=utf-8', ...(unavailable ? { 'retry-after': '5' } : {}) },
          },
        ];
      }
      let disarmExpiry: (() => void) | undefined;
      let checked: EventStream<SubscriptionPayload> | undefined;
      const result = await open(caller, params, 'sse', () => {
        disarmExpiry?.();
        if (checked) sseApiKeys.delete(checked);
      });
      answer.operationName = result.operationName;
      answer.operationSeconds = result.operationSeconds;
      if (!('stream' in result)) {
        const errors = result.errors.map((e) => e.toJSON());
        answer.errorCodes = codesOf(errors);
        // A document that does not parse is a bad request, as graphql-sse itself answers it (before any stream).
        if (errors[0]?.extensions?.code === ErrorCode.GRAPHQL_PARSE_FAILED) {
          return [
            JSON.stringify({ errors }),
            { status: 400, statusText: 'Bad Request', headers: { 'content-type': 'application/json; charset=utf-8' } },
          ];
        }
        // `data: null` makes graphql-sse treat it as a result: one `next` with the errors, then `complete`.
        return { data: null, errors } as never;
      }
      const { stream } = result;
      answer.errorCodes = result.firstErrorCodes;
      checked = stream;
      sseApiKeys.set(stream, caller.principal.apiKeyId);
      disarmExpiry = atExpiry(caller.principal, () =>
        endSse(stream, { message: 'Token expired', extensions: { code: ErrorCode.UNAUTHENTICATED } }),
      );
      return stream as never;
    },
  });

  /**
   * Ends an SSE subscription with a last payload holding `error` (a token's expiry, a revoked key):
   * an error returned to the client, counted as every later payload's are (`onErrorsSent`). A
   * WebSocket gets a close code for the same ends instead, no error.
   */
  const endSse = (stream: EventStream<SubscriptionPayload>, error: { message: string; extensions: { code: unknown } }) => {
    if (stream.ended) return;
    options.onErrorsSent?.(codesOf([error]));
    stream.end({ errors: [error] });
  };

  /**
   * Whether a response still reaches its client: `writable` stays true on a response whose socket
   * was destroyed (the client left while its subscription started), where a write only fails in
   * its callback.
   */
  const sending = (res: ServerResponse) => res.writable && !res.destroyed;

  // ---- API keys revoked while their subscriptions are open ----
  /** The API key of each open SSE stream (a WebSocket's is its connection's caller). */
  const sseApiKeys = new Map<EventStream<SubscriptionPayload>, string>();
  let checking = false;
  /**
   * One sweep: each API key with open subscriptions asked once (the router's lookup is cached
   * per key, so this costs a map read per key, and a database read per key per cache TTL), and
   * everything open of a refused key ended. Sweeps never overlap.
   */
  const checkOpenApiKeys = async (checkApiKey: (apiKeyId: string) => Promise<GhostPayError | undefined>) => {
    if (checking || closing) return;
    checking = true;
    try {
      const keys = new Set(sseApiKeys.values());
      for (const ws of wss.clients) {
        const apiKeyId = states.get(ws)?.caller?.principal.apiKeyId;
        if (apiKeyId) keys.add(apiKeyId);
      }
      const refusals = new Map<string, GhostPayError>();
      const pending = [...keys];
      // A bounded number at a time: with a cold cache each is a database read.
      while (pending.length > 0) {
        await Promise.all(
          pending.splice(0, 32).map(async (apiKeyId) => {
            const refusal = await checkApiKey(apiKeyId).catch((error: unknown) => {
              logger.warn({ err: error }, 'checking an API key of open subscriptions failed');
              return undefined;
            });
            if (refusal) refusals.set(apiKeyId, refusal);
          }),
        );
      }
      if (refusals.size === 0 || closing) return;
      for (const ws of wss.clients) {
        const apiKeyId = states.get(ws)?.caller?.principal.apiKeyId;
        const refusal = apiKeyId === undefined ? undefined : refusals.get(apiKeyId);
        if (!refusal) continue;
        logger.info({ apiKeyId, code: refusal.extensions.code }, 'closing a WebSocket whose API key was refused');
        ws.close(SubscriptionCloseCode.Unauthorized, refusal.message.slice(0, 120));
      }
      for (const [stream, apiKeyId] of sseApiKeys) {
        const refusal = refusals.get(apiKeyId);
        if (!refusal) continue;
        logger.info({ apiKeyId, code: refusal.extensions.code }, 'ending an SSE subscription whose API key was refused');
        endSse(stream, { message: refusal.message, extensions: { code: refusal.extensions.code } });
      }
    } finally {
      checking = false;
    }
  };
  const checkApiKey = options.checkApiKey;
  const apiKeyCheck =
    checkApiKey && limits.revocationCheckMs > 0
      ? setInterval(() => void checkOpenApiKeys(checkApiKey), limits.revocationCheckMs)
      : undefined;
  apiKeyCheck?.unref();

  const shutDown = async () => {
    closing = true;
    clearInterval(heartbeat);
    clearInterval(apiKeyCheck);
    for (const stream of [...streams]) stream.end();
    // Let the transports send each `complete` before the sockets close (bounded).
    const deadline = Date.now() + 1_000;
    while (streams.size > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
    await new Promise((resolve) => setImmediate(resolve));
    for (const ws of wss.clients) ws.close(SubscriptionCloseCode.GoingAway, 'Router shutting down');
    await wsServer.dispose();
    for (const ws of wss.clients) ws.terminate();
    await new Promise<void>((resolve) => wss.close(() => resolve()));
    await pool.close();
    await slots.close();
  };

  return {
    handleUpgrade(req, socket, head) {
      const pathname = (req.url ?? '/').split('?')[0];
      if (pathname !== path || closing) {
        socket.destroy();
        return;
      }
      // Until its connection_init is accepted a socket costs memory and a connection for up to
      // connectionInitTimeoutMs and belongs to no API key: bounded per client address instead.
      const unpend = pendingPerAddress.take(addressOf(req), limits.maxUnauthenticatedWebSocketsPerAddress);
      if (!unpend) {
        const retryAfter = Math.max(1, Math.ceil(limits.connectionInitTimeoutMs / 1000));
        const message = `Too many WebSockets waiting to authenticate from this address (at most ${limits.maxUnauthenticatedWebSocketsPerAddress})`;
        const body = JSON.stringify({ errors: [{ message, extensions: { code: ErrorCode.RATE_LIMITED, retryAfter } }] });
        // Answered before any WebSocket exists (an HTTP 429 to the upgrade: graphql-ws clients retry it).
        socket.end(
          `HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nretry-after: ${retryAfter}\r\ncache-control: no-store\r\nconnection: close\r\n\r\n${body}`,
        );
        wsAttempt(req).answered(undefined, { errorCodes: [ErrorCode.RATE_LIMITED], refused: true });
        return;
      }
      // Whatever becomes of the upgrade (refused by ws, closed before or after connection_init), the raw socket closes.
      socket.once('close', unpend);
      pendingOf.set(req, unpend);
      wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
    },
    async handleSse(req, res, body, onAnswered) {
      // Checked here, so every refusal carries a code (graphql-sse answers some with an empty body).
      const params = readSseRequest(req, body);
      if (isSseRefusal(params)) {
        sendJson(res, params.status, { errors: [{ message: params.message, extensions: { code: params.code } }] }, params.headers);
        onAnswered?.({ errorCodes: [params.code], httpStatus: params.status });
        return;
      }
      const answer: Omit<SubscribeAnswer, 'httpStatus'> = { errorCodes: [] };
      // graphql-sse gets the checked parameters as a JSON POST whatever the method (its GET parser
      // insists on a `query`, which a hash-only request lacks), and the one Accept its
      // distinct-connections mode recognises.
      const headers: Record<string, string | undefined> = {
        accept: 'text/event-stream',
        'content-type': 'application/json',
        authorization: req.headers.authorization,
      };
      const [payload, init] = await sse({
        method: 'POST',
        url: req.url ?? '/',
        headers: { get: (key) => headers[key.toLowerCase()] },
        body: params as unknown as Record<PropertyKey, unknown>,
        raw: req,
        context: { res, answer },
      });
      res.writeHead(init.status, init.statusText, init.headers);
      onAnswered?.({ ...answer, httpStatus: init.status });
      if (!payload || typeof payload === 'string') {
        await new Promise<void>((resolve) => res.end(payload ?? undefined, () => resolve()));
        return;
      }
      // The client going away ends the event stream (and with it the subscription).
      const stop = () => void payload.return(undefined);
      res.once('close', stop);
      try {
        // Each message is handed to the response at once: graphql-sse queues what it is not asked
        // for without bound, so waiting for each write to flush moved a client that stops reading
        // into that queue. What waits is counted here instead, and bounded.
        for await (const chunk of payload) {
          if (!sending(res)) break;
          res.write(chunk);
          if (res.writableLength > limits.sseMaxBufferedBytes) {
            logger.warn(
              { buffered: res.writableLength, limit: limits.sseMaxBufferedBytes },
              'dropping an SSE subscription whose client does not read',
            );
            // 'close' ends the event stream, and with it the subscription and its slot.
            res.destroy();
            break;
          }
        }
      } finally {
        res.off('close', stop);
      }
      if (!sending(res)) return;
      // The subscription ended: the client has sseEndTimeoutMs to take the rest (its `complete`),
      // else the connection is dropped rather than held until the peer goes away.
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => res.destroy(), limits.sseEndTimeoutMs);
        timer.unref();
        const done = () => {
          clearTimeout(timer);
          resolve();
        };
        res.once('close', done);
        res.end(done);
      });
    },
    stats() {
      return { clientSubscriptions: streams.size, apiKeyReservations: slots.held(), webSockets: wss.clients.size, upstream: pool.stats() };
    },
    close() {
      closed ??= shutDown();
      return closed;
    },
  };
}
