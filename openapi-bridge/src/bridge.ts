import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ServerOptions as HttpsServerOptions } from 'node:https';
import {
  BodyTooLargeError,
  ClientGoneError,
  clientAddressOf,
  createMetricsRegistry,
  createServiceServer,
  declaresNonUtf8Charset,
  ErrorCode,
  type FieldProblem,
  type Logger,
  type Registry,
  readBody,
  requestIdHeader,
  requestIdOf,
  type ServiceServer,
  serviceServerOptionsFrom,
  traceHeadersFor,
} from '@ghostpay/platform';
import type { BridgeConfig } from './config.ts';
import { docsPaths, loadDocsFiles } from './docs-page.ts';
import {
  badInputMessage,
  errorEnvelope,
  mapGraphQLErrors,
  mapNonGraphQLAnswer,
  type RetryAdvice,
  unavailableMessageFor,
} from './error-mapping.ts';
import { apiContentSecurityPolicy, applyCors, docsContentSecurityPolicy, setSecurityHeaders } from './http-security.ts';
import { scanJsonText } from './json-text-scan.ts';
import { type ApiRoute, loadSpec, manifestPath, matchRoute, type OpenApiDocument, routesOf } from './openapi-spec.ts';
import { operationMappings } from './operation-mappings.ts';
import { loadManifest, type ManifestOperation } from './persisted-query-manifest.ts';
import { firstRepeatedHeader } from './repeated-headers.ts';
import { createRequestValidator, maskCardNumbers } from './request-validation.ts';
import { createRouterClient, type RouterClient, RouterUnreachableError } from './router-client.ts';

/** Throws on bytes that are not UTF-8 instead of replacing them. */
const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

export interface BridgeDeps {
  config: Pick<
    BridgeConfig,
    'ROUTER_URL' | 'BRIDGE_CORS_ORIGINS' | 'BRIDGE_MAX_BODY_BYTES' | 'ROUTER_TIMEOUT_MS' | 'ROUTER_CONNECTIONS' | 'SHUTDOWN_TIMEOUT_MS'
  > &
    /** BRIDGE_TRUSTED_PROXY_HOPS @default 0: the socket peer is the client; MAX_CONNECTIONS @default 10000 */
    Partial<Pick<BridgeConfig, 'BRIDGE_TRUSTED_PROXY_HOPS' | 'MAX_CONNECTIONS'>>;
  logger: Logger;
  /** @default a fresh registry labelled service=openapi-bridge */
  registry?: Registry;
  /** TLS options; when set the bridge serves HTTPS and sends HSTS. */
  tls?: HttpsServerOptions;
  /** @default openapi-bridge/openapi.yaml */
  spec?: OpenApiDocument;
  /** @default openapi-bridge/persisted-queries.json */
  manifestFile?: string;
  /** @default an undici keep-alive pool to `config.ROUTER_URL` */
  routerClient?: RouterClient;
}

export interface Bridge {
  readonly server: ServiceServer;
  /** Listens (port 0 in tests) and resolves with the base URL. */
  start(port: number, host?: string): Promise<string>;
  readonly url: string;
  close(): Promise<void>;
}

/**
 * Paths the bridge answers without a GraphQL operation: its own (the contract, the docs
 * page) and those of platform's server bootstrap. Each must be documented in openapi.yaml.
 */
export const staticPaths = ['/openapi.json', ...docsPaths, '/healthz', '/readyz', '/metrics'];

/** The header parameter that makes a mutation retry-safe (the contract's name). */
const idempotencyKeyHeader = 'Idempotency-Key';

/** A request body as read: parsed, why it is refused, or gone with the client that was sending it. */
type BodyRead =
  | { ok: true; body: unknown; nonIntegerLiterals?: string[] | undefined }
  | { ok: false; status: number; code: string; message: string; fields?: FieldProblem[]; headers?: Record<string, string> }
  | { ok: false; clientGone: true };

/** Headers of the router's answer that REST clients need (rate limiting). */
const passedThroughHeaders = ['retry-after', 'ratelimit', 'ratelimit-policy'];

/**
 * The `Retry-After` of a 503 (or 429) when neither the router's headers nor its error gave one:
 * the router's own for its 503s. Without it a client retries at once, into the same outage.
 */
const defaultRetryAfterSeconds = 5;

/**
 * The `Retry-After` of a 409 (`IDEMPOTENCY_KEY_IN_USE`) whose error carries no
 * `extensions.retryAfter`: the request holding the key is still in flight; the client then gets
 * its answer replayed. The charges service sends its own hint (how long the original can still
 * hold the key), which `ensureRetryAfter` prefers.
 */
const inUseRetryAfterSeconds = 1;

/** Every 409, 429 and 503 tells the client when to come back (the contract requires the header). */
function ensureRetryAfter(res: ServerResponse, status: number, seconds?: number) {
  if (res.hasHeader('retry-after')) return;
  if (status === 429 || status === 503) res.setHeader('retry-after', String(seconds ?? defaultRetryAfterSeconds));
  else if (status === 409) res.setHeader('retry-after', String(seconds ?? inUseRetryAfterSeconds));
}

/**
 * The REST bridge: validates each request against `openapi.yaml`, runs the operation's
 * persisted GraphQL document on the router by hash only, and answers the contract's shapes.
 * Builds without listening; `start` listens.
 */
export function createBridge(deps: BridgeDeps): Bridge {
  const { config, logger } = deps;
  const spec = deps.spec ?? loadSpec();
  const routes = routesOf(spec);
  const manifest = loadManifest(deps.manifestFile ?? manifestPath);
  const persisted = new Map<ApiRoute, { operation: ManifestOperation; mapping: (typeof operationMappings)[string] }>();
  for (const route of routes) {
    if (!route.graphqlOperation) continue;
    const operation = manifest.get(route.graphqlOperation);
    const mapping = operationMappings[route.graphqlOperation];
    // Fail at start, not on the first request: the router would refuse an unknown hash anyway.
    if (!operation) throw new Error(`${route.graphqlOperation} is not in the persisted query manifest; run npm run build:manifest`);
    if (!mapping) throw new Error(`${route.graphqlOperation} has no REST mapping in operation-mappings.ts`);
    persisted.set(route, { operation, mapping });
  }
  const validateRequest = createRequestValidator(spec, routes);
  const docsFiles = loadDocsFiles();
  const specJson = JSON.stringify(spec);
  const tls = Boolean(deps.tls);
  const routerClient =
    deps.routerClient ??
    createRouterClient({ url: config.ROUTER_URL, timeoutMs: config.ROUTER_TIMEOUT_MS, connections: config.ROUTER_CONNECTIONS });

  /**
   * The headers a route reads that may appear once: the token it forwards, the key that makes
   * it retry-safe, the type of the body it reads. (`POST /auth/token` ignores Authorization.)
   */
  const singletonHeaders = new Map<ApiRoute, (readonly [string, string])[]>();
  for (const route of routes) {
    const names: (readonly [string, string])[] = [];
    if (route.requiresAuth) names.push(['authorization', 'Authorization']);
    if (route.parameters.some((p) => p.in === 'header' && p.name === idempotencyKeyHeader)) {
      names.push([idempotencyKeyHeader.toLowerCase(), idempotencyKeyHeader]);
    }
    if (route.method === 'POST') names.push(['content-type', 'Content-Type']);
    singletonHeaders.set(route, names);
  }
  const singletonHeadersOf = (route: ApiRoute) => singletonHeaders.get(route) ?? [];

  const sendError = (
    res: ServerResponse,
    status: number,
    code: string,
    message: string,
    requestId: string,
    extra: { fields?: { field: string; message: string }[]; headers?: Record<string, string> } = {},
  ) => {
    const text = JSON.stringify(errorEnvelope(code, message, requestId, extra.fields));
    res.writeHead(status, {
      'content-type': 'application/json; charset=utf-8',
      'content-length': Buffer.byteLength(text),
      // An error is about one request: no cache may answer the next one with it.
      'cache-control': 'no-store',
      ...extra.headers,
    });
    res.end(text);
  };

  /** The unknown-route 404: names the method, never the path (it may hold a card number). */
  const sendNoRoute = (res: ServerResponse, req: IncomingMessage, requestId: string) =>
    sendError(res, 404, ErrorCode.NOT_FOUND, `No route answers ${req.method} on this path`, requestId);

  const sendBody = (res: ServerResponse, status: number, body: unknown) => {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  };

  /**
   * Reads a POST body (413 past `BRIDGE_MAX_BODY_BYTES`). An operation the contract gives no
   * `requestBody` (cancel, reveal) takes none: nothing, or an empty JSON object as some clients
   * always send; anything else is refused rather than dropped unread, as unknown fields are.
   */
  const readJsonBody = async (req: IncomingMessage, takesBody: boolean): Promise<BodyRead> => {
    let raw: Buffer;
    try {
      raw = await readBody(req, config.BRIDGE_MAX_BODY_BYTES);
    } catch (error) {
      if (error instanceof BodyTooLargeError) {
        return { ok: false, status: 413, code: ErrorCode.PAYLOAD_TOO_LARGE, message: `Request body exceeds ${error.limit} bytes` };
      }
      if (error instanceof ClientGoneError) return { ok: false, clientGone: true };
      throw error;
    }
    if (raw.length === 0) return { ok: true, body: undefined };
    const refusal = (message: string, field = 'body', fieldMessage = message): BodyRead => ({
      ok: false,
      status: 400,
      code: ErrorCode.BAD_USER_INPUT,
      message,
      fields: [{ field, message: fieldMessage }],
    });
    const noBody = refusal('This operation takes no request body');
    // A media type the bridge does not read is 415 with what it reads, as the router answers it.
    const unsupported = (message: string): BodyRead => ({
      ok: false,
      status: 415,
      code: ErrorCode.BAD_USER_INPUT,
      message,
      headers: { accept: 'application/json; charset=utf-8' },
    });
    const contentType = String(req.headers['content-type'] ?? '');
    if (!/^application\/json\s*(;|$)/i.test(contentType)) {
      if (!takesBody) return noBody;
      return unsupported('Content-Type must be application/json');
    }
    // JSON is UTF-8 (RFC 8259): a body declared in another charset, or whose bytes are not UTF-8,
    // is refused rather than read with replacement characters standing in for what was sent. A
    // charset other than UTF-8 is a media type the bridge does not support: 415.
    if (declaresNonUtf8Charset(contentType)) return unsupported('Content-Type charset must be utf-8');
    let text: string;
    try {
      text = strictUtf8.decode(raw);
    } catch {
      return refusal('The request body is not valid UTF-8');
    }
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      return refusal('The request body is not valid JSON');
    }
    const scan = scanJsonText(text);
    if (scan.duplicateKey !== undefined) {
      const duplicate = maskCardNumbers(scan.duplicateKey);
      return refusal(`${duplicate}: appears more than once`, duplicate, 'appears more than once');
    }
    if (!takesBody) {
      const empty = body !== null && typeof body === 'object' && !Array.isArray(body) && Object.keys(body).length === 0;
      return empty ? { ok: true, body: undefined } : noBody;
    }
    return { ok: true, body, nonIntegerLiterals: scan.nonIntegerLiterals };
  };

  const handleApiRoute = async (
    req: IncomingMessage,
    res: ServerResponse,
    route: ApiRoute,
    params: Record<string, string>,
    url: URL,
    requestId: string,
  ) => {
    const target = persisted.get(route);
    if (!target) throw new Error(`route ${route.operationId} has no persisted operation`);
    res.setHeader('cache-control', 'no-store');

    const repeated = firstRepeatedHeader(req.rawHeaders, singletonHeadersOf(route));
    if (repeated !== undefined) {
      const problem = { field: repeated, message: 'must be given once' };
      sendError(res, 400, ErrorCode.BAD_USER_INPUT, badInputMessage([problem]), requestId, { fields: [problem] });
      return;
    }

    const authorization = req.headers.authorization;
    if (route.requiresAuth && !(typeof authorization === 'string' && /^Bearer\s+\S+$/i.test(authorization))) {
      // Refused here rather than by the router: a request the contract already rejects costs no router call.
      sendError(res, 401, ErrorCode.UNAUTHENTICATED, 'A bearer token is required (Authorization: Bearer <access_token>)', requestId, {
        headers: { 'www-authenticate': 'Bearer' },
      });
      return;
    }

    const parsed: BodyRead =
      req.method === 'POST' ? await readJsonBody(req, route.bodySchema !== undefined) : { ok: true, body: undefined };
    if (!parsed.ok && 'clientGone' in parsed) {
      // The client's doing (a dropped connection, a killed worker), not the bridge's: nothing
      // reached the router, there is no one to answer, and it is no error of ours to alert on.
      logger.info({ requestId, operation: route.graphqlOperation }, 'client closed the connection before its body was complete');
      return;
    }
    if (!parsed.ok) {
      // The rest of a body past the limit is not worth reading: the socket closes after the 413.
      if (parsed.status === 413) res.setHeader('connection', 'close');
      sendError(res, parsed.status, parsed.code, parsed.message, requestId, {
        ...(parsed.fields ? { fields: parsed.fields } : {}),
        ...(parsed.headers ? { headers: parsed.headers } : {}),
      });
      return;
    }
    const checked = validateRequest(route, {
      params,
      query: url.searchParams,
      headers: req.headers,
      body: parsed.body,
      nonIntegerLiterals: parsed.nonIntegerLiterals,
    });
    if (!checked.ok) {
      sendError(res, 400, ErrorCode.BAD_USER_INPUT, badInputMessage(checked.problems), requestId, { fields: checked.problems });
      return;
    }

    const { operation, mapping } = target;
    // Said in every 503: whether a retry is safe depends on the route and on the client's key.
    const takesKey = route.parameters.some((p) => p.in === 'header' && p.name === idempotencyKeyHeader);
    const retryAdvice: RetryAdvice = !takesKey
      ? 'safe'
      : checked.request.headers[idempotencyKeyHeader] !== undefined
        ? 'same-key'
        : 'unknown-outcome';
    const unavailable = unavailableMessageFor(retryAdvice);
    const headers: Record<string, string> = { [requestIdHeader]: requestId };
    // The router limits anonymous calls (POST /auth/token) per client address; behind the bridge
    // every caller would share the bridge's. The bridge states the client's address — the socket
    // peer, or behind BRIDGE_TRUSTED_PROXY_HOPS proxies the entry the outermost one appended — and
    // drops the rest of X-Forwarded-For (a client must not choose its own rate-limit identity).
    // The router reads it only with ROUTER_TRUST_PROXY=true.
    headers['x-forwarded-for'] = clientAddressOf(req, config.BRIDGE_TRUSTED_PROXY_HOPS ?? 0);
    // Only where the contract asks for a token: on an anonymous route (POST /auth/token) a stale
    // token the client still sends would make the router refuse the very call that replaces it.
    if (route.requiresAuth && typeof authorization === 'string') headers.authorization = authorization;
    Object.assign(headers, traceHeadersFor(req.headers));
    let result: Awaited<ReturnType<RouterClient['execute']>>;
    try {
      result = await routerClient.execute({
        operationName: operation.name,
        sha256Hash: operation.id,
        variables: mapping.variables(checked.request),
        headers,
      });
    } catch (error) {
      if (!(error instanceof RouterUnreachableError)) throw error;
      logger.error({ requestId, operation: operation.name, err: error.message, sent: error.sent }, 'router unreachable');
      ensureRetryAfter(res, 503);
      // A call never sent (it waited out ROUTER_TIMEOUT_MS for a connection) ran nowhere: any
      // retry is safe, even of a card issue without a key.
      sendError(res, 503, ErrorCode.SERVICE_UNAVAILABLE, error.sent ? unavailable : unavailableMessageFor('safe'), requestId);
      return;
    }
    const passRateLimitHeaders = () => {
      for (const name of passedThroughHeaders) {
        const value = result.headers[name];
        if (value === undefined) continue;
        // The contract's Retry-After is whole seconds: a proxy's HTTP-date or a repeated field is
        // left out (ensureRetryAfter then gives the default) rather than passed to clients that parse an integer.
        if (name === 'retry-after' && !(typeof value === 'string' && /^[0-9]+$/.test(value))) continue;
        res.setHeader(name, value);
      }
    };

    const value = result.body?.data?.[mapping.rootField];
    const errors = Array.isArray(result.body?.errors) ? result.body.errors.filter((e) => e && typeof e === 'object') : [];
    // A root field with errors inside it is incomplete: a nulled nested field (a card's owner
    // when auth is down) would break the contract's shape, and a list whose items failed would
    // look empty. Such an answer is a failure, mapped like any other; so is an error with no
    // path, which the bridge cannot place.
    const failures = errors.filter((e) => !Array.isArray(e.path) || e.path.length === 0 || e.path[0] === mapping.rootField);
    if (value && typeof value === 'object' && failures.length === 0) {
      if (errors.length > 0) {
        logger.warn(
          { requestId, operation: operation.name, codes: errors.map((e) => e.extensions?.code) },
          'GraphQL errors outside the root field',
        );
      }
      passRateLimitHeaders();
      const mapped = mapping.result(value as Record<string, unknown>, checked.request);
      if (mapped.declined) {
        sendBody(res, mapped.status ?? 402, {
          ...mapped.body,
          ...errorEnvelope(ErrorCode.CARD_DECLINED, `The charge was declined (${mapped.declined})`, requestId),
        });
        return;
      }
      sendBody(res, mapped.status ?? route.successStatus, mapped.body);
      return;
    }
    if (errors.length === 0) {
      // Not a GraphQL answer: a proxy or load balancer in front of the router answered.
      const fallback = mapNonGraphQLAnswer(result.status);
      const line = { requestId, operation: operation.name, status: result.status };
      if (fallback.status >= 500) logger.error(line, 'router answered without data or errors');
      else logger.warn(line, 'router answered without data or errors');
      if (fallback.keepsRateLimitHeaders) passRateLimitHeaders();
      ensureRetryAfter(res, fallback.status);
      sendError(res, fallback.status, fallback.code, fallback.status === 503 ? unavailable : fallback.message, requestId, {
        ...(fallback.status === 401 ? { headers: { 'www-authenticate': 'Bearer' } } : {}),
      });
      return;
    }
    if (value && typeof value === 'object') {
      logger.warn(
        { requestId, operation: operation.name, codes: failures.map((e) => e.extensions?.code) },
        'partial GraphQL result refused',
      );
    }
    passRateLimitHeaders();
    const mapped = mapGraphQLErrors(errors, requestId, route.paramNames);
    if (mapped.deploymentFault) {
      logger.error({ requestId, operation: operation.name, fault: mapped.deploymentFault }, 'router refused a bridge operation');
    }
    ensureRetryAfter(res, mapped.status, mapped.retryAfter);
    if (mapped.status === 401) res.setHeader('www-authenticate', 'Bearer');
    if (mapped.status === 503) mapped.envelope.error.message = unavailable;
    sendBody(res, mapped.status, mapped.envelope);
  };

  const handler = async (req: IncomingMessage, res: ServerResponse) => {
    const requestId = requestIdOf(req);
    res.setHeader(requestIdHeader, requestId);
    const url = URL.parse(req.url ?? '/', 'http://bridge.invalid');
    if (!url) {
      // Node accepts request targets such as `//[` that are no URL at all.
      sendError(res, 400, ErrorCode.BAD_USER_INPUT, 'The request target is not a valid URL', requestId);
      return;
    }
    const path = url.pathname;
    const isDocs = path === '/docs' || path.startsWith('/docs/');
    setSecurityHeaders(res, { tls, csp: isDocs ? docsContentSecurityPolicy : apiContentSecurityPolicy });

    const methods = [...new Set(routes.filter((r) => r.pattern.test(path)).map((r) => r.method))].sort();
    if (methods.length > 0 && applyCors(req, res, { allowedOrigins: config.BRIDGE_CORS_ORIGINS }, methods)) return;

    const match = matchRoute(routes, req.method ?? 'GET', path);
    if (match.kind === 'not-found') {
      sendNoRoute(res, req, requestId);
      return;
    }
    if (match.kind === 'method-not-allowed') {
      // The closed list has no code of its own for this: the client's request is wrong
      // (BAD_USER_INPUT), and the status and Allow say how. Like 404s, the message never
      // repeats the path, which may hold a card number pasted where an id goes.
      sendError(
        res,
        405,
        ErrorCode.BAD_USER_INPUT,
        `${req.method} is not allowed on this path; the Allow header lists what is`,
        requestId,
        {
          headers: { allow: match.allowed.join(', ') },
        },
      );
      return;
    }
    const { route, params } = match;
    if (route.graphqlOperation) {
      try {
        await handleApiRoute(req, res, route, params, url, requestId);
      } catch (error) {
        // Still the contract's envelope (with the request id to find this line), never a stack trace.
        logger.error({ requestId, operation: route.graphqlOperation, err: error }, 'bridge request failed');
        if (!res.headersSent) sendError(res, 500, ErrorCode.INTERNAL_SERVER_ERROR, 'Internal server error', requestId);
        else res.destroy();
      }
      return;
    }
    if (path === '/openapi.json') {
      res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(specJson) });
      res.end(specJson);
      return;
    }
    const file = docsFiles.get(path);
    if (!file) {
      sendNoRoute(res, req, requestId);
      return;
    }
    res.writeHead(200, { 'content-type': file.contentType, 'content-length': file.body.length, 'cache-control': 'public, max-age=3600' });
    res.end(file.body);
  };

  const server = createServiceServer({
    service: 'openapi-bridge',
    logger,
    handler,
    registry: deps.registry ?? createMetricsRegistry('openapi-bridge'),
    readiness: [{ name: 'router', check: () => routerClient.ping() }],
    ...serviceServerOptionsFrom(config),
    onClose: () => routerClient.close(),
    // Route templates, never raw paths: ids must not become metric labels.
    routeLabel: (req) => {
      const path = URL.parse(req.url ?? '/', 'http://bridge.invalid')?.pathname;
      if (path === undefined) return 'unmatched';
      const match = matchRoute(routes, req.method ?? 'GET', path);
      return match.kind === 'found' ? match.route.pathTemplate : 'unmatched';
    },
    ...(deps.tls ? { tls: deps.tls } : {}),
  });

  return {
    server,
    async start(port, host) {
      await server.listen(port, host);
      return server.url;
    },
    get url() {
      return server.url;
    },
    close: () => server.close(),
  };
}
