import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ApolloGateway } from '@apollo/gateway';
import { ApolloServer, type ApolloServerPlugin, type GraphQLRequestContext, HeaderMap } from '@apollo/server';
import { ApolloServerPluginLandingPageDisabled } from '@apollo/server/plugin/disabled';
import {
  addressIdentity,
  BodyTooLargeError,
  clientAddressOf,
  createMetricsRegistry,
  createServiceServer,
  currentTraceId,
  declaresNonUtf8Charset,
  ErrorCode,
  formatGraphQLError,
  GhostPayError,
  httpStatusFor,
  type JwtVerifier,
  type Principal,
  type ReadinessCheck,
  readBody,
  requestIdHeader,
  requestIdOf,
  type ServerTlsConfig,
  type ServiceServer,
  sendJson,
  serviceServerOptionsFrom,
  traceHeadersFor,
} from '@ghostpay/platform';
import {
  buildASTSchema,
  type FormattedExecutionResult,
  type GraphQLError,
  type GraphQLFormattedError,
  type GraphQLSchema,
  Kind,
  parse,
  print,
} from 'graphql';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { type ApiKeyLookup, refusingRevokedKeys, revokedKeyRefusal } from './api-keys.ts';
import {
  type AuthRequirements,
  fillRemovedWithNull,
  filterOperation,
  markSecurityFeaturesEnforced,
  readAuthRequirements,
} from './auth-directives.ts';
import { type RouterConfig, subgraphClientTls } from './config.ts';
import { compiledGatewayExecutor, createCompiledExecutor } from './executor/index.ts';
import { defaultOperationLimits, enforceOperationLimits, measureOperation, type OperationLimits } from './operation-limits.ts';
import { preValidationCheck, preValidationRule } from './overlap-limits.ts';
import {
  applySafelist,
  loadPersistedQueryManifests,
  type PersistedOperation,
  resolvePersistedQuery,
  sha256Hex,
} from './persisted-queries.ts';
import { playgroundClientHeader, servePlayground } from './playground.ts';
import {
  createMemoryRateLimiter,
  createRedisRateLimiter,
  type RateLimitDecision,
  type RateLimiter,
  rateLimitHeaders,
  rateLimitIdentity,
} from './rate-limiter.ts';
import { callerSafeId, emitRequestEvent, type RequestEventHandler, type RouterRequestEvent, traceIdOf } from './request-events.ts';
import {
  countSubscribeAnswer,
  countWebSocketSubscribe,
  createOperationLabels,
  createRouterMetrics,
  isServerErrorResponse,
} from './router-metrics.ts';
import { withoutSchemaSuggestions } from './schema-suggestions.ts';
import { createRetryBudget, type SubgraphCallContext, SubgraphDataSource } from './subgraph-data-source.ts';
import {
  createRedisSubscriptionSlots,
  createRouterSubscriptions,
  type RouterSubscriptionsSettings,
  type SubscriptionGateway,
} from './subscriptions/index.ts';
import { watchSupergraphFile } from './supergraph-loader.ts';
import { nullVariableError } from './variable-nulls.ts';

/** Per-request context: the verified caller and what subgraph calls forward and record. */
export interface RouterContext extends SubgraphCallContext {
  principal?: Principal;
  requestId: string;
  logger: Logger;
  /**
   * Filled during execution for the request event. An object shared by reference, because
   * Apollo Server executes each operation with a shallow copy of the context.
   */
  report: {
    operationName?: string;
    operationType?: string;
    /** The response's error codes, as Apollo Server's pipeline sent them (every operation of a batch); set once it answered. */
    errorCodes?: string[];
  };
  /**
   * Set on a subscription's queries (its first payload, its per-event re-reads): the subscription
   * gateway counts the subscription they serve (`countSubscribeAnswer`, the re-reads in
   * `graphql_subscription_event_read_duration_seconds`), so they are no query operations of their own.
   */
  subscription?: boolean;
}

export interface RouterDeps {
  config: RouterConfig;
  logger: Logger;
  /** The platform JWT verifier (JWKS of the auth service). */
  verifier: JwtVerifier;
  /** @default a fresh registry labelled service="router" */
  registry?: Registry;
  /** Shared rate-limit counters across replicas; absent → in-memory limits (one replica). */
  redis?: Redis;
  /**
   * The token's API key as auth stores it (`createApiKeyLookup(database)`): its own rate limit,
   * and whether it was revoked (its tokens are then refused). Absent → everyone gets the default
   * limit, and a revoked key's tokens work until they expire.
   */
  apiKeyLookup?: ApiKeyLookup;
  /** Called after each GraphQL response with identifiers and timings (the analytics emitter). Never awaited. */
  onRequestEvent?: RequestEventHandler;
  /** Serve this SDL instead of watching `config.ROUTER_SUPERGRAPH_PATH` (tests). */
  supergraphSdl?: string;
  readiness?: ReadinessCheck[];
  onClose?: () => Promise<void>;
  /** Subscriptions on WebSocket `/graphql` and SSE `/graphql/stream` (src/subscriptions/README.md); absent → none. */
  subscriptions?: RouterSubscriptionsSettings;
  /**
   * Server TLS (`TLS_CERT_FILE`, `TLS_KEY_FILE`, optionally `TLS_CLIENT_CA_FILE`; see
   * `loadServerTlsConfig`): HTTPS and WSS, renewed certificates picked up without a restart.
   * Absent or without files → plain HTTP.
   */
  tls?: ServerTlsConfig;
}

export interface Router extends ServiceServer {
  readonly apollo: ApolloServer<RouterContext>;
  readonly gateway: ApolloGateway;
  readonly dataSources: ReadonlyMap<string, SubgraphDataSource>;
  readonly subscriptions?: SubscriptionGateway;
  /** Loads the supergraph, starts Apollo Server, then listens. */
  start(port: number, host?: string): Promise<string>;
}

function errorBody(code: ErrorCode, message: string, extensions: Record<string, unknown> = {}) {
  return { errors: [{ message, extensions: { code, ...extensions } }] };
}

/** The names of the operations a manifest body defines (a manifest entry may hold several). */
function operationNamesIn(body: string): string[] {
  try {
    return parse(body).definitions.flatMap((d) => (d.kind === Kind.OPERATION_DEFINITION && d.name ? [d.name.value] : []));
  } catch {
    return [];
  }
}

/**
 * Apollo Server's refusals of an APQ extension, by their exact message (they have no code of
 * their own): a hash that is not the query's sha256, and a `persistedQuery.version` other than 1.
 */
const persistedQueryRefusals = new Map<string, ErrorCode>([
  ['provided sha does not match query', ErrorCode.BAD_USER_INPUT],
  ['Unsupported persisted query version', ErrorCode.PERSISTED_QUERY_NOT_SUPPORTED],
]);

/** What a non-admin caller is told when a subgraph could not be reached (`SUBGRAPH_UNAVAILABLE`). */
const subgraphUnavailableMessage = 'A service this request needs is temporarily unavailable; retry later';

/**
 * An error as a non-admin caller sees it: without "did you mean" suggestions, without
 * `extensions.serviceName` (our topology), and for `SUBGRAPH_UNAVAILABLE` a fixed message
 * instead of the subgraph's name and the network reason (`ECONNREFUSED`, `circuit open`, a
 * deadline). The code and path stay; other codes keep their message, which is the client's
 * (`CARD_DECLINED`, `NOT_FOUND`, ...). Runs only on responses that carry errors.
 */
function forNonAdmin(error: GraphQLFormattedError): GraphQLFormattedError {
  const extensions = error.extensions;
  const unavailable = extensions?.code === ErrorCode.SUBGRAPH_UNAVAILABLE;
  const message = unavailable ? subgraphUnavailableMessage : withoutSchemaSuggestions(error.message);
  if (message === error.message && (extensions === undefined || !('serviceName' in extensions))) return error;
  const { serviceName: _serviceName, ...kept } = extensions ?? {};
  return { ...error, message, ...(extensions ? { extensions: kept } : {}) };
}

/**
 * A subgraph answered a leaf of the wrong type, or `null` for a non-null field: the gateway (and
 * the compiled executor, which does as it does) nulls what it could not complete and, when no fetch
 * failed, reports the problems only in `extensions.valueCompletion` (code `INVALID_GRAPHQL`,
 * outside the closed list), with no `errors`: HTTP 200 and, for `card(id:)`, `data: null` that a
 * client could read as "nothing there", and no failure in the availability SLI. They are server
 * failures of ours: each becomes an error in `errors` (its message and path kept) with
 * `INTERNAL_SERVER_ERROR`, so the client sees a field error where the spec puts one and the
 * response counts as a server error (`router_graphql_server_error_responses_total`, the request
 * event's codes, the REST bridge's 500). Logged, since no subgraph reported it. Costs one property
 * read per response.
 */
function reportValueCompletion(result: FormattedExecutionResult, log: Logger): void {
  const { valueCompletion, ...extensions } = result.extensions ?? {};
  if (!Array.isArray(valueCompletion) || valueCompletion.length === 0) return;
  const completion: GraphQLFormattedError[] = valueCompletion.map((problem: { message?: unknown; path?: unknown }) => ({
    message: typeof problem.message === 'string' ? problem.message : 'A field could not be completed',
    ...(Array.isArray(problem.path) ? { path: problem.path as (string | number)[] } : {}),
    extensions: { code: ErrorCode.INTERNAL_SERVER_ERROR },
  }));
  log.error({ errors: completion }, 'a subgraph answered values of the wrong type or null for a non-null field');
  result.errors = [...(result.errors ?? []), ...completion];
  if (Object.keys(extensions).length > 0) result.extensions = extensions;
  else delete result.extensions;
}

function withHttpStatus(error: GhostPayError): GhostPayError {
  const code = error.extensions.code as string;
  error.extensions.http = { status: httpStatusFor(code) };
  return error;
}

/**
 * The federation router: @apollo/gateway inside Apollo Server 5 behind the platform HTTP
 * bootstrap. Per request, in order: body size, JWT, rate limit, batch cap, safelist, then
 * Apollo (parse with a token cap, the repeated-fields limit, validation, operation limits and
 * the introspection gate), the auth-directive filter, planning and subgraph fetches.
 */
export function createRouter(deps: RouterDeps): Router {
  const { config, logger } = deps;
  // Every path that verifies a token (HTTP, WebSocket, SSE, per-event queries) refuses one whose key was revoked.
  const verifier = deps.apiKeyLookup ? refusingRevokedKeys(deps.verifier, deps.apiKeyLookup) : deps.verifier;
  const registry = deps.registry ?? createMetricsRegistry('router');
  const metrics = createRouterMetrics(registry);
  const limits: OperationLimits = {
    ...defaultOperationLimits,
    maxDepth: config.ROUTER_MAX_DEPTH,
    maxAliases: config.ROUTER_MAX_ALIASES,
    maxRootFields: config.ROUTER_MAX_ROOT_FIELDS,
    maxTokens: config.ROUTER_MAX_TOKENS,
    maxCost: config.ROUTER_MAX_COST,
    maxRepeatedFields: config.ROUTER_MAX_REPEATED_FIELDS,
    maxDefinitions: config.ROUTER_MAX_DEFINITIONS,
  };
  // Every client document, before graphql-js validates it: POST/GET /graphql through Apollo's
  // validation rules, subscription documents before their own validation (src/overlap-limits.ts).
  const checkDocument = preValidationCheck(limits);
  const limiter: RateLimiter = deps.redis
    ? createRedisRateLimiter({ redis: deps.redis, logger, onFallback: () => metrics.redisFallback.inc() })
    : createMemoryRateLimiter();
  // Manifest operations (the REST bridge's, client manifests) are trusted in both modes: with
  // APQ they are pre-registered, so a hash-only request for one never needs a first round trip;
  // with the safelist they are the only operations accepted.
  if (config.ROUTER_PERSISTED_QUERIES === 'safelist' && config.ROUTER_PQ_MANIFESTS.length === 0) {
    throw new Error('ROUTER_PERSISTED_QUERIES=safelist needs at least one manifest in ROUTER_PQ_MANIFESTS');
  }
  const manifest = loadPersistedQueryManifests(config.ROUTER_PQ_MANIFESTS);
  const safelist: Map<string, PersistedOperation> | undefined = config.ROUTER_PERSISTED_QUERIES === 'safelist' ? manifest : undefined;
  // Client-chosen operation names are bounded as metric labels; the manifests' are trusted.
  const operationLabel = createOperationLabels([...manifest.values()].flatMap((o) => [o.name, ...operationNamesIn(o.body)]));

  const retryBudget = createRetryBudget();
  const subgraphTls = subgraphClientTls(config);
  const dataSources = new Map<string, SubgraphDataSource>();
  // @apollo/gateway otherwise starts a usage-data exporter to Apollo that also probes cloud
  // metadata endpoints (AWS, GCP, Azure) at start: this router never phones home, whoever
  // embeds it (main.ts, npm start's stack, the bench), whatever the environment says: an
  // inherited APOLLO_TELEMETRY_DISABLED=false must not turn it on.
  process.env.APOLLO_TELEMETRY_DISABLED = 'true';
  const gateway = new ApolloGateway({
    supergraphSdl: deps.supergraphSdl
      ? async () => ({ supergraphSdl: markSecurityFeaturesEnforced(deps.supergraphSdl as string) })
      : watchSupergraphFile(config.ROUTER_SUPERGRAPH_PATH, logger, { transform: markSecurityFeaturesEnforced }),
    serviceHealthCheck: false,
    logger: logger.child({ component: 'gateway' }),
    buildService: ({ name, url }) => {
      dataSources
        .get(name)
        ?.close()
        .catch(() => {});
      const source = new SubgraphDataSource({
        name,
        url: config.ROUTER_SUBGRAPH_URLS[name] ?? url ?? '',
        timeoutMs: config.ROUTER_SUBGRAPH_TIMEOUTS_MS[name] ?? config.ROUTER_SUBGRAPH_TIMEOUT_MS,
        breaker: { failureThreshold: config.ROUTER_BREAKER_FAILURES, openMs: config.ROUTER_BREAKER_OPEN_MS },
        retryBudget,
        metrics,
        tls: subgraphTls,
      });
      dataSources.set(name, source);
      return source;
    },
  });

  // Plans come from the gateway's planner; the compiled executor runs them (ROUTER_EXECUTOR=gateway: the gateway's own).
  const compiledExecutor = config.ROUTER_EXECUTOR === 'compiled' ? createCompiledExecutor({ gateway }) : undefined;
  gateway.onSchemaLoadOrUpdate(() => compiledExecutor?.reset());

  // The auth filter reads the directives from the supergraph itself, re-read on every reload.
  let authState: { schema: GraphQLSchema; requirements: AuthRequirements } | undefined;
  gateway.onSchemaLoadOrUpdate(({ coreSupergraphSdl }) => {
    const schema = buildASTSchema(parse(coreSupergraphSdl), { assumeValidSDL: true });
    authState = { schema, requirements: readAuthRequirements(schema) };
  });

  const wrappedGateway = {
    onSchemaLoadOrUpdate: gateway.onSchemaLoadOrUpdate.bind(gateway),
    stop: () => gateway.stop(),
    async load(options: Parameters<ApolloGateway['load']>[0]) {
      const loaded = await gateway.load(options);
      const execute = compiledExecutor ? compiledGatewayExecutor(gateway, loaded.executor, compiledExecutor) : loaded.executor;
      const executor: typeof loaded.executor = async (requestContext) => {
        const context = requestContext.context as unknown as RouterContext;
        if (!authState) throw new Error('supergraph not loaded');
        const filtered = filterOperation(
          authState.schema,
          authState.requirements,
          requestContext.document,
          requestContext.operationName ?? requestContext.request.operationName,
          context.principal,
          requestContext.request.variables,
        );
        if (!filtered.changed) return execute(requestContext);
        if (!filtered.document) {
          // Nothing authorized is left: refuse without planning or calling any subgraph.
          const first = filtered.errors[0]?.extensions.code as string | undefined;
          if (requestContext.response?.http) requestContext.response.http.status = httpStatusFor(first);
          return { data: null, errors: filtered.errors };
        }
        const source = print(filtered.document);
        const result = await execute({
          ...requestContext,
          document: filtered.document,
          source,
          // The plan cache is keyed by this hash: a filtered document must never share a plan with the original.
          queryHash: sha256Hex(source),
          request: { ...requestContext.request, query: source },
        });
        fillRemovedWithNull(result.data as Record<string, unknown> | null | undefined, filtered.removedPaths);
        return { ...result, errors: [...filtered.errors, ...(result.errors ?? [])] };
      };
      return { ...loaded, executor };
    },
  };

  const routerPlugin: ApolloServerPlugin<RouterContext> = {
    async requestDidStart() {
      const started = performance.now();
      return {
        async didResolveOperation(rc: GraphQLRequestContext<RouterContext>) {
          const context = rc.contextValue;
          context.operationType = rc.operation?.operation;
          context.report.operationName = rc.operationName ?? undefined;
          context.report.operationType = context.operationType;
          if (!rc.document) return;
          if (!rc.operation) {
            // The request names no operation of a document that defines several, or one it does not
            // define: the client's mistake. Left to execution, the gateway threw it as an unexpected
            // error (500 INTERNAL_SERVER_ERROR, counted against the availability SLI).
            throw withHttpStatus(
              new GhostPayError(
                ErrorCode.BAD_USER_INPUT,
                rc.request.operationName
                  ? 'The document defines no operation with the name given in operationName'
                  : 'Must provide operation name if query contains multiple operations.',
              ),
            );
          }
          const variables = (rc.request.variables ?? {}) as Record<string, unknown>;
          const shape = measureOperation(rc.document, rc.operation, variables);
          if (shape.introspection && context.principal?.role !== 'admin') {
            throw withHttpStatus(new GhostPayError(ErrorCode.FORBIDDEN, 'Introspection is available to admin tokens only'));
          }
          try {
            enforceOperationLimits(shape, limits);
          } catch (error) {
            throw error instanceof GhostPayError ? withHttpStatus(error) : error;
          }
          if (context.operationType === 'subscription') {
            throw withHttpStatus(
              new GhostPayError(ErrorCode.BAD_USER_INPUT, 'Subscriptions are served over WebSocket on /graphql, not over HTTP POST'),
            );
          }
          // An explicit null where a non-null value is required (through a defaulted nullable variable).
          const nullVariable = nullVariableError(rc.schema, rc.document, rc.operation, variables);
          if (nullVariable) throw withHttpStatus(nullVariable);
        },
        async willSendResponse(rc) {
          const context = rc.contextValue;
          const body = rc.response.body;
          if (body.kind !== 'single') return;
          if (body.singleResult.extensions?.valueCompletion) reportValueCompletion(body.singleResult, context.logger);
          const errors = body.singleResult.errors;
          if (errors && context.principal?.role !== 'admin') {
            // Only admins see internals: "did you mean" suggestions (schema names), which subgraph
            // answered an error (`serviceName`) and why one could not be reached (`forNonAdmin`).
            body.singleResult.errors = errors.map(forNonAdmin);
          }
          context.report.errorCodes ??= [];
          // A subscription's first query and re-reads: counted as the subscription, with the errors
          // its client is sent (countSubscribeAnswer, onErrorsSent), and as its event reads.
          if (context.subscription) return;
          for (const error of body.singleResult.errors ?? []) {
            const code = String(error.extensions?.code ?? 'INTERNAL_SERVER_ERROR');
            metrics.errors.inc({ code });
            context.report.errorCodes.push(code);
          }
          metrics.requestDuration.observe(
            { operation_name: operationLabel(rc.operationName), operation_type: rc.operation?.operation ?? 'unknown' },
            (performance.now() - started) / 1000,
          );
        },
      };
    },
  };

  const apollo = new ApolloServer<RouterContext>({
    gateway: wrappedGateway,
    csrfPrevention: true,
    introspection: true, // gated per caller in didResolveOperation
    allowBatchedHttpRequests: config.ROUTER_MAX_BATCH_SIZE > 0,
    parseOptions: { maxTokens: config.ROUTER_MAX_TOKENS },
    // Before graphql-js's own rules look at a selection set: documents whose shape makes its
    // overlap check quadratic are refused first (src/overlap-limits.ts). Every document Apollo
    // parses goes through here: POST/GET /graphql, each entry of a batch, APQ registrations,
    // manifest operations and the subscriptions' per-event queries (a cached document passed it).
    validationRules: [preValidationRule(checkDocument)],
    includeStacktraceInErrorResponses: false,
    // Shutdown belongs to the composition root (exitOnSignals → close drains requests, then stops
    // Apollo): Apollo's own SIGTERM handler would stop it first and re-raise the signal, killing
    // the process with requests in flight and `onClose` (analytics flush, Redis, database) never run.
    stopOnTerminationSignals: false,
    formatError: (formatted: GraphQLFormattedError, error: unknown) => {
      // Apollo's own refusals of a persisted-query extension carry no code, so the platform's
      // formatter made them 'Internal server error' (INTERNAL_SERVER_ERROR, a server-side failure
      // to the SLI) although they are the client's mistakes, answered 400.
      const persistedQueryCode = persistedQueryRefusals.get(formatted.message);
      if (persistedQueryCode && (error as { extensions?: { code?: unknown } } | undefined)?.extensions?.code === undefined) {
        return { message: formatted.message, extensions: { code: persistedQueryCode } };
      }
      // graphql-js spells it "more that N tokens"; accept both spellings.
      if (/Document contains more tha[nt] \d+ tokens/.test(formatted.message)) {
        return {
          message: formatted.message,
          extensions: { code: ErrorCode.OPERATION_LIMIT_EXCEEDED, limit: 'tokens', max: limits.maxTokens },
        };
      }
      // Our pre-validation limit, which Apollo wraps as a validation error: its own code and fields.
      const original = (error as { originalError?: { extensions?: Record<string, unknown> } } | undefined)?.originalError;
      if (original?.extensions?.code === ErrorCode.OPERATION_LIMIT_EXCEEDED) {
        const { limit, max, actual } = original.extensions;
        return { message: formatted.message, extensions: { code: ErrorCode.OPERATION_LIMIT_EXCEEDED, limit, max, actual } };
      }
      // A path set on our own errors survives even when a second copy of graphql wrapped them (vitest loads the ESM build).
      const path = formatted.path ?? (error as { path?: readonly (string | number)[] } | undefined)?.path;
      return formatGraphQLError(path ? { ...formatted, path } : formatted, error);
    },
    plugins: [ApolloServerPluginLandingPageDisabled(), routerPlugin],
  });

  /**
   * Hands one request event to `deps.onRequestEvent` on a later tick: every GraphQL request
   * (POST/GET /graphql, an SSE subscription, a WebSocket subscribe) goes through here. The
   * request id and trace id a caller chose go only when they hold nothing secret-looking.
   */
  const reportRequest = (
    req: IncomingMessage,
    ids: { requestId: string; traceId: string | undefined; callerTraceId: string | undefined },
    fields: Omit<RouterRequestEvent, 'requestId' | 'traceId'>,
  ) =>
    emitRequestEvent(
      deps.onRequestEvent,
      {
        requestId: callerSafeId(ids.requestId, req.headers[requestIdHeader] as string | undefined) ?? '[redacted]',
        // The active trace when tracing is on (the server span continues the caller's traceparent), else the caller's.
        traceId: callerSafeId(ids.traceId ?? ids.callerTraceId, ids.callerTraceId),
        ...fields,
      },
      (error) => {
        metrics.requestEventErrors.inc();
        logger.warn({ err: (error as Error)?.message }, 'request event handler failed');
      },
    );

  /** A subscribe attempt's event (WebSocket or SSE), sent with its first answer. */
  const reportSubscription = (
    req: IncomingMessage,
    ids: Parameters<typeof reportRequest>[1],
    answer: {
      principal?: Principal;
      operationName?: string;
      httpStatus: number;
      errorCodes: string[];
      /** `performance.now()` when the attempt began. */
      startedAt: number;
      receivedAt: Date;
    },
  ) =>
    reportRequest(req, ids, {
      operationName: answer.operationName,
      operationType: 'subscription',
      apiKeyId: answer.principal?.apiKeyId,
      userId: answer.principal?.userId,
      role: answer.principal?.role,
      httpStatus: answer.httpStatus,
      errorCodes: answer.errorCodes,
      latencyMs: performance.now() - answer.startedAt,
      subgraphTimings: [],
      receivedAt: answer.receivedAt.toISOString(),
    });

  /** The trace id of the traceparent a request carries, if it sent a well-formed one. */
  const callerTraceIdOf = (req: IncomingMessage) =>
    traceIdOf(typeof req.headers.traceparent === 'string' ? req.headers.traceparent : undefined);

  const subscriptions = deps.subscriptions
    ? createRouterSubscriptions<RouterContext>({
        ...deps.subscriptions,
        upstream: { ...deps.subscriptions.upstream, tls: deps.subscriptions.upstream?.tls ?? subgraphTls },
        gateway,
        apollo,
        verifier,
        logger,
        registry,
        // The same manifest and rule as POST /graphql: in safelist mode non-admins subscribe only to manifest operations.
        persistedQueries: { operations: manifest, safelist: safelist !== undefined },
        // The checks POST /graphql makes before validating, before the subscription's own validation.
        checkDocument,
        // WebSockets not yet authenticated count per client address, keyed as the anonymous rate limit is.
        addressOf: (request) => clientIdentity(request),
        // With Redis the per-API-key limit holds across replicas, as the HTTP rate limit does.
        slots: deps.redis
          ? createRedisSubscriptionSlots({ redis: deps.redis, logger, onFallback: () => metrics.redisFallback.inc() })
          : undefined,
        // Each WebSocket subscribe takes one request from the key's per-minute budget, as an SSE request does.
        admitWebSocketSubscribe: async (principal, request) => {
          const decision = await consumeRateLimit(principal, request, 1);
          if (decision.allowed) return undefined;
          return new GhostPayError(ErrorCode.RATE_LIMITED, rateLimitedMessage(decision), {
            extensions: { retryAfter: decision.retryAfterSeconds },
          });
        },
        // A revoked key's open subscriptions end within the lookup's cache TTL and one check
        // interval, not at their next event (a quiet one may never have one).
        checkApiKey: deps.apiKeyLookup ? revokedKeyRefusal(deps.apiKeyLookup) : undefined,
        // Each WebSocket subscribe attempt (and each refused connection_init) is one request, as an
        // SSE request is: counted once in the availability SLI, and one request event.
        onWebSocketAnswered: (answer) => {
          const seconds = (performance.now() - answer.startedAt) / 1000;
          countWebSocketSubscribe(registry, metrics, { refused: answer.refused, errorCodes: answer.errorCodes, seconds });
          countSubscribeAnswer(metrics, operationLabel, answer);
          if (!deps.onRequestEvent) return;
          reportSubscription(
            answer.request,
            { requestId: requestIdOf(answer.request), traceId: undefined, callerTraceId: callerTraceIdOf(answer.request) },
            answer,
          );
        },
        // Per-event re-reads are no operations of their own (a burst of events is no burst of client requests).
        onEventRead: (read) => metrics.subscriptionEventReads.observe({ outcome: read.outcome }, read.seconds),
        // Errors of later payloads are errors returned to the client, counted when sent.
        onErrorsSent: (codes) => {
          for (const code of codes) metrics.errors.inc({ code });
        },
        contextFor: (principal, authorization) => {
          const requestId = randomUUID();
          return {
            principal,
            requestId,
            logger: logger.child({ requestId }),
            forwardHeaders: { [requestIdHeader]: requestId, authorization },
            subgraphTimings: [],
            report: {},
            subscription: true,
          };
        },
      })
    : undefined;

  // With one trusted proxy in front (the bridge, an ingress), the client is the address that
  // proxy appended: the rightmost X-Forwarded-For entry (platform's clientAddressOf, as auth and
  // the bridge read it). Entries left of it are whatever the client sent and must not choose its
  // rate-limit bucket.
  const trustedProxyHops = config.ROUTER_TRUST_PROXY ? 1 : 0;
  const clientAddress = (req: IncomingMessage) => clientAddressOf(req, trustedProxyHops);
  /**
   * What an anonymous client is limited as (its rate limit, its unauthenticated WebSockets):
   * addressIdentity, so an IPv6 client counts by its /64 (else each of its 2^64 addresses would
   * be a fresh allowance), `::ffff:a.b.c.d` as `a.b.c.d`, a port dropped.
   */
  const clientIdentity = (req: IncomingMessage) => addressIdentity(clientAddress(req));

  /**
   * Takes `cost` requests from the caller's per-minute budget: its user's, shared by all their API
   * keys (`rateLimitIdentity`), each request judged by the limit of the key it came with (the
   * key's own when auth stores one, else the default); else its address's anonymous one. Every
   * request that runs an operation takes from it: POST/GET /graphql (each entry of a batch) and each subscribe attempt, whose
   * first payload is a gateway query like any other (WebSocket `subscribe`, SSE request).
   */
  const consumeRateLimit = async (principal: Principal | undefined, req: IncomingMessage, cost: number) => {
    const identity = rateLimitIdentity(principal, () => clientIdentity(req));
    let limit = principal ? config.ROUTER_RATE_LIMIT_PER_MINUTE : config.ROUTER_ANONYMOUS_RATE_LIMIT_PER_MINUTE;
    if (principal && deps.apiKeyLookup)
      limit = (await deps.apiKeyLookup(principal.apiKeyId).catch(() => undefined))?.rateLimitPerMinute ?? limit;
    const decision = await limiter.consume(identity, limit, cost);
    if (!decision.allowed) metrics.rateLimited.inc({ scope: principal ? 'user' : 'client_address' });
    return decision;
  };

  const rateLimitedMessage = (decision: RateLimitDecision) => `Rate limit of ${decision.limit} requests per minute exceeded`;

  /** Sends a refused decision's 429 (its headers are already on the response). */
  const refuseRateLimited = (refuse: Refuse, decision: RateLimitDecision) =>
    refuse(429, ErrorCode.RATE_LIMITED, rateLimitedMessage(decision), {}, { retryAfter: decision.retryAfterSeconds });

  type Refuse = (
    httpStatus: number,
    code: ErrorCode,
    message: string,
    headers?: Record<string, string>,
    extensions?: Record<string, unknown>,
  ) => void;

  /**
   * Reads the body up to `ROUTER_MAX_BODY_BYTES` (a declared larger Content-Length is refused
   * before reading). Past the limit: 413 and the connection closes, the rest never read.
   */
  const readLimitedBody = async (req: IncomingMessage, res: ServerResponse, refuse: Refuse): Promise<Buffer | undefined> => {
    try {
      return await readBody(req, config.ROUTER_MAX_BODY_BYTES);
    } catch (error) {
      if (error instanceof BodyTooLargeError) {
        res.setHeader('connection', 'close');
        refuse(413, ErrorCode.PAYLOAD_TOO_LARGE, error.message);
        return undefined;
      }
      throw error;
    }
  };

  /**
   * A request body as the GraphQL handlers take it: parsed when it says it is JSON, its text
   * otherwise, undefined when empty. `false` when it is malformed JSON (400) or declares a charset other than UTF-8 (415): the refusal is sent.
   */
  const parsedBody = (req: IncomingMessage, raw: Buffer, refuse: Refuse): { body: unknown } | false => {
    if (raw.length === 0) return { body: undefined };
    const contentType = req.headers['content-type'] ?? '';
    // The body is read as UTF-8 (JSON is UTF-8, RFC 8259): one declared in another charset is
    // refused, not run as the mojibake UTF-8 makes of it. Only a header naming a charset is parsed.
    if (declaresNonUtf8Charset(contentType)) {
      refuse(415, ErrorCode.BAD_USER_INPUT, 'Content-Type charset must be utf-8', { accept: 'application/json; charset=utf-8' });
      return false;
    }
    if (!contentType.includes('json')) return { body: raw.toString('utf8') };
    try {
      return { body: JSON.parse(raw.toString('utf8')) };
    } catch {
      refuse(400, ErrorCode.GRAPHQL_PARSE_FAILED, 'Request body is not valid JSON');
      return false;
    }
  };

  /**
   * Verifies the Authorization header: the principal, none for a request without one, or a
   * refusal already sent (`false`): 401, 503 when the signing keys cannot be fetched, 429 past
   * the address's anonymous limit, which bad tokens count against (verifying is not free).
   */
  const verifyCaller = async (req: IncomingMessage, res: ServerResponse, refuse: Refuse): Promise<Principal | undefined | false> => {
    try {
      return await verifier.verifyAuthorization(req.headers.authorization);
    } catch (error) {
      // No principal: the address's anonymous budget.
      const decision = await consumeRateLimit(undefined, req, 1);
      for (const [name, value] of Object.entries(rateLimitHeaders(decision))) res.setHeader(name, value);
      if (!decision.allowed) {
        refuseRateLimited(refuse, decision);
        return false;
      }
      if (error instanceof GhostPayError && error.extensions.code === ErrorCode.SERVICE_UNAVAILABLE) {
        // The signing keys could not be fetched: an outage to retry, not a bad credential.
        refuse(503, ErrorCode.SERVICE_UNAVAILABLE, error.message, { 'retry-after': '5' });
        return false;
      }
      const message = error instanceof GhostPayError ? error.message : 'Token is invalid';
      refuse(401, ErrorCode.UNAUTHENTICATED, message, { 'www-authenticate': 'Bearer error="invalid_token"' });
      return false;
    }
  };

  /**
   * GraphQL over SSE (`/graphql/stream`). graphql-sse's own Node reader buffers a body of any
   * size, so the router hands it the body: the token first (every subscription needs one, as on
   * the WebSocket), refused without reading anything; then the body, bounded like /graphql's.
   */
  const handleStream = async (req: IncomingMessage, res: ServerResponse, gateway: SubscriptionGateway) => {
    const receivedAt = new Date();
    const started = performance.now();
    const requestId = requestIdOf(req);
    const ids = { requestId, traceId: currentTraceId(), callerTraceId: callerTraceIdOf(req) };
    res.setHeader(requestIdHeader, requestId);
    res.setHeader('cache-control', 'no-store');
    let principal: Principal | undefined;
    // When its first answer (a refusal, the stream's first payload) goes out: counted as a failed
    // response like POST /graphql's when that payload failed on our side, and one request event.
    const finish = (answer: { httpStatus: number; errorCodes: string[]; operationName?: string; operationSeconds?: number }) => {
      if (isServerErrorResponse(answer.httpStatus, answer.errorCodes)) metrics.serverErrorResponses.inc();
      countSubscribeAnswer(metrics, operationLabel, answer);
      reportSubscription(req, ids, { ...answer, principal, startedAt: started, receivedAt });
    };
    const refuse: Refuse = (httpStatus, code, message, headers = {}, extensions = {}) => {
      // Its code is counted by `finish`, as every answer of a subscribe attempt is (both transports).
      // Refused before its body was read: closing is cheaper than reading the rest to keep the connection.
      if (req.method === 'POST' && !req.readableEnded) res.setHeader('connection', 'close');
      sendJson(res, httpStatus, errorBody(code, message, extensions), headers);
      finish({ httpStatus, errorCodes: [code] });
    };
    const verified = await verifyCaller(req, res, refuse);
    if (verified === false) return;
    principal = verified;
    if (!principal) {
      refuse(401, ErrorCode.UNAUTHENTICATED, 'Authentication required', { 'www-authenticate': 'Bearer' });
      return;
    }
    // A subscribe runs its first payload's query at once: one request of the key's budget, before the body is read.
    const decision = await consumeRateLimit(principal, req, 1);
    for (const [name, value] of Object.entries(rateLimitHeaders(decision))) res.setHeader(name, value);
    if (!decision.allowed) {
      refuseRateLimited(refuse, decision);
      return;
    }
    let body: unknown;
    if (req.method === 'POST') {
      const raw = await readLimitedBody(req, res, refuse);
      if (!raw) return;
      const parsed = parsedBody(req, raw, refuse);
      if (!parsed) return;
      body = parsed.body;
    }
    await gateway.handleSse(req, res, body, finish);
  };

  const handleGraphQL = async (req: IncomingMessage, res: ServerResponse, url: URL) => {
    const receivedAt = new Date();
    const started = performance.now();
    const requestId = requestIdOf(req);
    res.setHeader(requestIdHeader, requestId);
    // Refusals too: no answer of this API is for a shared cache (Apollo Server's own header, set
    // below for what its pipeline answers, is no-store unless a schema hint makes data cacheable).
    res.setHeader('cache-control', 'no-store');
    // The trace id of the caller's traceparent, if it sent a well-formed one.
    const callerTraceId = callerTraceIdOf(req);
    // Read once, here: this runs synchronously inside the HTTP instrumentation's server span, so
    // the id cannot depend on the context surviving the awaits below.
    const activeTraceId = currentTraceId();
    let principal: Principal | undefined;
    let status = 200;
    const context: RouterContext = {
      requestId,
      logger: logger.child({ requestId }),
      // Subgraphs see the client's address (auth limits failed token exchanges per address).
      forwardHeaders: { [requestIdHeader]: requestId, 'x-forwarded-for': clientAddress(req) },
      subgraphTimings: [],
      report: {},
    };
    const errorCodes: string[] = [];
    const finish = (httpStatus: number) => {
      // Once per HTTP response (a batch included), with every code it carried.
      if (isServerErrorResponse(httpStatus, errorCodes)) metrics.serverErrorResponses.inc();
      reportRequest(
        req,
        { requestId, traceId: activeTraceId, callerTraceId },
        {
          operationName: context.report.operationName,
          operationType: context.report.operationType,
          apiKeyId: principal?.apiKeyId,
          userId: principal?.userId,
          role: principal?.role,
          httpStatus,
          errorCodes,
          latencyMs: performance.now() - started,
          subgraphTimings: context.subgraphTimings,
          receivedAt: receivedAt.toISOString(),
        },
      );
    };
    const refuse: Refuse = (httpStatus, code, message, headers = {}, extensions = {}) => {
      errorCodes.push(code);
      metrics.errors.inc({ code });
      sendJson(res, httpStatus, errorBody(code, message, extensions), headers);
      finish(httpStatus);
    };

    if (req.method !== 'POST' && req.method !== 'GET') {
      refuse(405, ErrorCode.BAD_USER_INPUT, 'Use POST (or GET for persisted queries)', { allow: 'GET, POST' });
      return;
    }
    const raw = await readLimitedBody(req, res, refuse);
    if (!raw) return;

    const verified = await verifyCaller(req, res, refuse);
    if (verified === false) return;
    principal = verified;
    context.principal = principal;
    if (principal && req.headers.authorization) context.forwardHeaders.authorization = req.headers.authorization;
    // Without tracing the caller's trace context passes through, checked (the W3C form, a bounded
    // tracestate). With tracing on, the undici instrumentation injects the router's own span as
    // the subgraphs' parent: forwarding the caller's header as well would send two traceparents.
    Object.assign(context.forwardHeaders, traceHeadersFor(req.headers, activeTraceId !== undefined));

    // A GET's body is never JSON to parse (its query is in the URL).
    let body: unknown;
    if (req.method === 'POST') {
      const parsed = parsedBody(req, raw, refuse);
      if (!parsed) return;
      body = parsed.body;
    } else if (raw.length > 0) {
      body = raw.toString('utf8');
    }
    const batchSize = Array.isArray(body) ? body.length : 1;
    if (Array.isArray(body) && (config.ROUTER_MAX_BATCH_SIZE === 0 || body.length > config.ROUTER_MAX_BATCH_SIZE || body.length === 0)) {
      refuse(
        400,
        ErrorCode.OPERATION_LIMIT_EXCEEDED,
        config.ROUTER_MAX_BATCH_SIZE === 0
          ? 'Batched requests are disabled'
          : `A batch may hold at most ${config.ROUTER_MAX_BATCH_SIZE} operations`,
        {},
        { limit: 'batch', max: config.ROUTER_MAX_BATCH_SIZE },
      );
      return;
    }

    const decision = await consumeRateLimit(principal, req, batchSize);
    for (const [name, value] of Object.entries(rateLimitHeaders(decision))) res.setHeader(name, value);
    if (!decision.allowed) {
      refuseRateLimited(refuse, decision);
      return;
    }

    if (req.headers[playgroundClientHeader] === 'playground' && principal?.role !== 'admin') {
      refuse(403, ErrorCode.FORBIDDEN, 'The playground is available to admin tokens only');
      return;
    }

    let search = url.search;
    if (safelist && principal?.role !== 'admin') {
      if (req.method === 'GET') {
        const params = url.searchParams;
        const request: Record<string, unknown> = { query: params.get('query') ?? undefined };
        try {
          if (params.get('extensions')) request.extensions = JSON.parse(params.get('extensions') as string);
        } catch {}
        const outcome = applySafelist(request, safelist);
        if (!outcome.ok) {
          refuse(400, ErrorCode.PERSISTED_QUERY_NOT_FOUND, outcome.message);
          return;
        }
        params.set('query', String(outcome.body.query));
        search = `?${params.toString()}`;
      } else {
        const requests = (Array.isArray(body) ? body : [body]) as Record<string, unknown>[];
        const rewritten: Record<string, unknown>[] = [];
        for (const request of requests) {
          const outcome = applySafelist(request && typeof request === 'object' ? request : {}, safelist);
          if (!outcome.ok) {
            refuse(400, ErrorCode.PERSISTED_QUERY_NOT_FOUND, outcome.message);
            return;
          }
          rewritten.push(outcome.body);
        }
        body = Array.isArray(body) ? rewritten : rewritten[0];
      }
    } else if (manifest.size > 0 && req.method === 'POST' && body && typeof body === 'object' && !Array.isArray(body)) {
      const outcome = resolvePersistedQuery(body as Record<string, unknown>, manifest, false);
      if (outcome.ok) body = outcome.body;
    } else if (manifest.size > 0 && req.method === 'GET' && !url.searchParams.has('query') && url.searchParams.has('extensions')) {
      // Pre-registered over GET too: a hash-only GET for a manifest operation runs at once (Apollo
      // then checks the hash against the manifest's text, which is its sha256).
      let extensions: unknown;
      try {
        extensions = JSON.parse(url.searchParams.get('extensions') as string);
      } catch {}
      const outcome = resolvePersistedQuery({ extensions }, manifest, false);
      if (outcome.ok && typeof outcome.body.query === 'string') {
        const params = new URLSearchParams(url.searchParams);
        params.set('query', outcome.body.query);
        search = `?${params.toString()}`;
      }
    }

    const headers = new HeaderMap();
    for (const [key, value] of Object.entries(req.headers)) {
      if (value !== undefined) headers.set(key, Array.isArray(value) ? value.join(', ') : value);
    }
    const response = await apollo.executeHTTPGraphQLRequest({
      httpGraphQLRequest: { method: req.method ?? 'GET', headers, search, body },
      context: async () => context,
    });
    status = response.status ?? 200;
    for (const [key, value] of response.headers) res.setHeader(key, value);
    res.statusCode = status;
    let text = '';
    if (response.body.kind === 'complete') text = response.body.string;
    else for await (const chunk of response.body.asyncIterator) text += chunk;
    res.end(text);
    if (context.report.errorCodes) {
      errorCodes.push(...context.report.errorCodes);
    } else if (text.includes('"errors"')) {
      // Refused before the pipeline's plugins ran (an HTTP-level error such as a body without a
      // query): the codes are in the body. Otherwise the plugin collected them, and scanning a
      // large answer for "errors" cost ~2% of the router's CPU on the federation benchmark.
      try {
        const parsed = JSON.parse(text) as { errors?: GraphQLError[] } | { errors?: GraphQLError[] }[];
        for (const item of Array.isArray(parsed) ? parsed : [parsed]) {
          for (const error of item.errors ?? []) {
            const code = String(error.extensions?.code ?? 'INTERNAL_SERVER_ERROR');
            // No plugin counted these (Apollo's HTTP-level refusals, e.g. CSRF prevention): errors returned all the same.
            metrics.errors.inc({ code });
            errorCodes.push(code);
          }
        }
      } catch {}
    }
    finish(status);
  };

  const server = createServiceServer({
    tlsFiles: deps.tls,
    service: 'router',
    logger,
    registry,
    readiness: [
      {
        name: 'supergraph',
        check: async () => {
          if (!authState) throw new Error('supergraph not loaded');
        },
      },
      ...(deps.readiness ?? []),
    ],
    // MAX_CONNECTIONS: subscriptions' WebSockets and SSE streams hold their connection for their whole life: they count.
    ...serviceServerOptionsFrom(config),
    onUpgrade: (req, socket, head) => (subscriptions ? subscriptions.handleUpgrade(req, socket, head) : socket.destroy()),
    routeLabel: (req) => {
      const path = (req.url ?? '/').split('?')[0] ?? '/';
      // SSE subscriptions get their own label: a stream's "duration" is its lifetime, which the
      // latency panels and alerts leave out (they still count as requests, like any answer).
      if (path === '/graphql' || path === '/graphql/stream') return path;
      return path.startsWith('/playground') ? '/playground' : '/';
    },
    handler: async (req, res) => {
      // `URL.parse`: Node accepts request targets such as `//[` that are no URL (and `new URL` throws).
      const url = URL.parse(req.url ?? '/', 'http://localhost');
      if (!url) return sendJson(res, 400, errorBody(ErrorCode.BAD_USER_INPUT, 'The request target is not a valid URL'));
      if (url.pathname === '/graphql/stream' && subscriptions) return handleStream(req, res, subscriptions);
      if (url.pathname === '/graphql') return handleGraphQL(req, res, url);
      if (config.ROUTER_PLAYGROUND && url.pathname.startsWith('/playground')) return servePlayground(req, res, url.pathname);
      sendJson(res, 404, errorBody(ErrorCode.NOT_FOUND, 'Not found'));
    },
    onClose: async () => {
      await apollo.stop();
      await Promise.all([...dataSources.values()].map((s) => s.close().catch(() => {})));
      await limiter.close();
      await deps.onClose?.();
    },
  });

  const closeServer = server.close;
  return Object.assign(server, {
    apollo,
    gateway,
    dataSources,
    subscriptions,
    // Open subscriptions (WebSockets, SSE streams) never end on their own: end them before draining.
    async close() {
      await subscriptions?.close();
      return closeServer();
    },
    async start(port: number, host?: string) {
      await apollo.start();
      await server.listen(port, host);
      return server.url;
    },
  });
}
