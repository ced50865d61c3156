import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer, type ServerOptions as HttpsServerOptions } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import getRawBody from 'raw-body';
import { type BaseConfig, defaultMaxConnections } from './config.ts';
import { throttledWarning } from './logger.ts';
import { createHttpDurationHistogram } from './metrics.ts';
import { reloadServerTlsOnChange, type ServerTlsConfig, serverTlsOptions } from './tls.ts';

export type RequestHandler = (req: IncomingMessage, res: ServerResponse) => void | Promise<void>;

export interface ReadinessCheck {
  name: string;
  /** Resolves when the dependency is reachable; throws otherwise. */
  check: () => Promise<unknown>;
}

/** How long `close()` lets in-flight work finish unless told otherwise (`SHUTDOWN_TIMEOUT_MS`, `shutdownTimeoutMs`). */
export const defaultShutdownTimeoutMs = 10_000;

export interface ServiceServerOptions {
  service: string;
  logger: Logger;
  /** Handles every request that is not /healthz, /readyz or /metrics. */
  handler: RequestHandler;
  registry: Registry;
  readiness?: ReadinessCheck[];
  /** How long in-flight requests may take to finish after SIGTERM. @default 10000 (`defaultShutdownTimeoutMs`) */
  shutdownTimeoutMs?: number;
  /** Called after the server stopped accepting and in-flight requests ended: close pools here. */
  onClose?: () => Promise<void>;
  /**
   * Exact paths the service serves (besides `/healthz`, `/readyz` and `/metrics`): the default
   * `routeLabel` labels each as itself and every other path `unmatched`. @default []
   */
  knownRoutes?: readonly string[];
  /**
   * Maps a request to the `route` label of the duration histogram. It must return one of a fixed
   * set of values, never text from the request: every distinct label is a series kept in memory
   * and scraped for ever, and a client can ask for any path. Not consulted for `/healthz`,
   * `/readyz` and `/metrics`, which are always labelled as themselves (dashboards exclude them).
   * @default the path when it is one of `knownRoutes`, else `unmatched`
   */
  routeLabel?: (req: IncomingMessage) => string;
  /** TLS (and mTLS with `requestCert`) options; plain HTTP when absent (and without `tlsFiles`). */
  tls?: HttpsServerOptions;
  /**
   * TLS from certificate files (`loadServerTlsConfig`), instead of `tls`: served when both files
   * are set, and reloaded into the running server when they change (a renewal that fails to load
   * is logged and the previous certificate kept). Plain HTTP without files.
   */
  tlsFiles?: ServerTlsConfig;
  /** Per-check timeout for /readyz. @default 2000 */
  readinessTimeoutMs?: number;
  /**
   * How long a client may take to send a request's headers, and its whole request (headers and
   * body), before it is answered 408 and the connection closed: what a slow-loris client (bytes
   * dribbled to hold sockets and handlers open) gets. Node's own bounds are 60 s and 300 s.
   * Responses, SSE streams and upgraded WebSockets are not bounded by either.
   * @default 10000 and 30000
   */
  headersTimeoutMs?: number;
  requestTimeoutMs?: number;
  /** Called for WebSocket upgrades (subscriptions). */
  onUpgrade?: (req: IncomingMessage, socket: Socket, head: Buffer) => void;
  /**
   * Open connections the server holds at most (`MAX_CONNECTIONS`); past it a new connection is
   * closed as it is accepted, before a byte of it is read (Node's `server.maxConnections`), and
   * counted in `http_connections_dropped_total`. Every socket counts while open: idle keep-alive
   * ones, slow ones, and upgraded WebSockets and SSE streams for their whole life. The timeouts
   * above bound how long one slow socket lives; this bounds how many a flood can hold at once
   * (each costs memory and a file descriptor). @default 10000
   */
  maxConnections?: number;
}

/**
 * Each setting of `baseConfigSchema` that configures a service's server, and the
 * `createServiceServer` (and `createSubgraphService`) option it sets. A new shared server setting
 * is one entry here (and its variable in `baseConfigSchema`, its option above): every service
 * spreading `serviceServerOptionsFrom(config)` picks it up.
 */
export const baseServerSettings = {
  SHUTDOWN_TIMEOUT_MS: 'shutdownTimeoutMs',
  MAX_CONNECTIONS: 'maxConnections',
} as const satisfies Partial<Record<keyof BaseConfig, keyof ServiceServerOptions>>;

type BaseServerSetting = keyof typeof baseServerSettings;

/** The part of a config built on `baseConfigSchema` that configures its server. */
export type BaseServerConfig = Pick<BaseConfig, BaseServerSetting>;

/** The server options `baseServerSettings` set. */
export type BaseServerOptions = { [K in BaseServerSetting as (typeof baseServerSettings)[K]]?: BaseConfig[K] };

/**
 * The server options a service's config sets (`SHUTDOWN_TIMEOUT_MS` → `shutdownTimeoutMs`,
 * `MAX_CONNECTIONS` → `maxConnections`), to spread into `createServiceServer` or
 * `createSubgraphService`: `...serviceServerOptionsFrom(config)`. A setting the config leaves out
 * (a service's deps may take them as optional) is left out, so the server's default applies.
 */
export function serviceServerOptionsFrom(config: Partial<BaseServerConfig>): BaseServerOptions {
  const options: Record<string, unknown> = {};
  for (const setting of Object.keys(baseServerSettings) as BaseServerSetting[]) {
    if (config[setting] !== undefined) options[baseServerSettings[setting]] = config[setting];
  }
  return options as BaseServerOptions;
}

/** The `BaseServerOptions` of `options` (a service's own options passed on to its server). */
export function baseServerOptionsOf(options: BaseServerOptions): BaseServerOptions {
  const picked: Record<string, unknown> = {};
  for (const option of Object.values(baseServerSettings)) {
    if (options[option] !== undefined) picked[option] = options[option];
  }
  return picked as BaseServerOptions;
}

export interface ServiceServer {
  readonly server: Server;
  listen(port: number, host?: string): Promise<AddressInfo>;
  /** The base URL once listening, e.g. http://127.0.0.1:4001 */
  readonly url: string;
  /** Graceful stop: refuse new connections, finish in-flight requests within the bound, run onClose. */
  close(): Promise<void>;
  readonly draining: boolean;
}

/** The `route` label of every request outside the routes a service knows. */
export const unmatchedRoute = 'unmatched';

const platformRoutes: ReadonlySet<string> = new Set(['/healthz', '/readyz', '/metrics']);

function pathOf(req: IncomingMessage): string {
  const url = req.url ?? '/';
  const query = url.indexOf('?');
  return query === -1 ? url : url.slice(0, query);
}

/**
 * Labels the platform's own routes as themselves, then asks `routeLabel` or, without one, labels
 * `knownRoutes` as themselves and everything else `unmatched`. Never the path a client made up:
 * `/x1`, `/x2`, … would each add a histogram series (unbounded memory and Prometheus
 * cardinality), and `/a4111111111111111` would put caller-chosen text into a label.
 */
function routeLabelling(knownRoutes: readonly string[], routeLabel: ((req: IncomingMessage) => string) | undefined) {
  const known = new Set([...platformRoutes, ...knownRoutes]);
  return (req: IncomingMessage): string => {
    const path = pathOf(req);
    if (platformRoutes.has(path) || !routeLabel) return known.has(path) ? path : unmatchedRoute;
    // Called when the response closes, outside any handler's try: a service's labelling that
    // throws on a strange request target must not end the process.
    try {
      return routeLabel(req);
    } catch {
      return unmatchedRoute;
    }
  };
}

async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The HTTP bootstrap every service uses: health, readiness, metrics, request timing and
 * graceful shutdown. Build it, then `listen`; tests listen on port 0.
 */
export function createServiceServer(options: ServiceServerOptions): ServiceServer {
  const { logger, handler, registry, readiness = [], shutdownTimeoutMs = defaultShutdownTimeoutMs, readinessTimeoutMs = 2_000 } = options;
  const routeLabel = routeLabelling(options.knownRoutes ?? [], options.routeLabel);
  const duration = createHttpDurationHistogram(registry);
  let draining = false;
  let closing: Promise<void> | undefined;
  let inFlight = 0;
  let idleResolve: (() => void) | undefined;

  const onRequest = async (req: IncomingMessage, res: ServerResponse) => {
    inFlight++;
    const started = process.hrtime.bigint();
    res.once('close', () => {
      inFlight--;
      if (req.url !== '/metrics') {
        const seconds = Number(process.hrtime.bigint() - started) / 1e9;
        // Closed before a status was sent (the client went away, or the connection was cut): 499, as
        // nginx counts it, not the 200 a response holds until it is written.
        const status = res.headersSent ? String(res.statusCode) : '499';
        duration.observe({ method: req.method ?? 'GET', route: routeLabel(req), status_code: status }, seconds);
      }
      if (inFlight === 0) idleResolve?.();
    });
    if (draining) res.setHeader('connection', 'close');
    const path = pathOf(req);
    try {
      if (path === '/healthz' && req.method === 'GET') {
        sendJson(res, 200, { status: 'ok' });
      } else if (path === '/readyz' && req.method === 'GET') {
        if (draining) {
          sendJson(res, 503, { status: 'draining' });
          return;
        }
        const results = await Promise.all(
          readiness.map(async ({ name, check }) => {
            try {
              await withTimeout(check(), readinessTimeoutMs, name);
              return { name, ok: true };
            } catch (error) {
              logger.warn({ check: name, err: (error as Error).message }, 'readiness check failed');
              return { name, ok: false };
            }
          }),
        );
        const ok = results.every((r) => r.ok);
        sendJson(res, ok ? 200 : 503, {
          status: ok ? 'ready' : 'unavailable',
          checks: Object.fromEntries(results.map((r) => [r.name, r.ok ? 'up' : 'down'])),
        });
      } else if (path === '/metrics' && req.method === 'GET') {
        const body = await registry.metrics();
        res.writeHead(200, { 'content-type': registry.contentType });
        res.end(body);
      } else {
        await handler(req, res);
      }
    } catch (error) {
      if (error instanceof ClientGoneError) {
        // The connection closed mid-body (the client left, or Node cut it at requestTimeoutMs):
        // nobody to answer and nothing of ours failed. Debug, not info: any client can cause one
        // line per request at will, and the duration histogram already counts it (status 499).
        logger.debug(
          { method: req.method, route: routeLabel(req) },
          'connection closed before the request body was complete; request dropped',
        );
        res.destroy();
        return;
      }
      logger.error({ err: error }, 'unhandled error in request handler');
      if (!res.headersSent) sendJson(res, 500, { error: { code: 'INTERNAL_SERVER_ERROR', message: 'Internal server error' } });
      else res.destroy();
    }
  };

  const tlsOptions = options.tlsFiles ? serverTlsOptions(options.tlsFiles) : options.tls;
  const requestTimeout = options.requestTimeoutMs ?? 30_000;
  const timeouts = {
    requestTimeout,
    headersTimeout: Math.min(options.headersTimeoutMs ?? 10_000, requestTimeout),
    // Idle keep-alive time is not counted in headersTimeout (Node >= 18); 65 s outlasts the 60 s
    // idle timeout of common load balancers, so they never reuse a socket this side just closed.
    keepAliveTimeout: 65_000,
    // How often Node looks for requests past those bounds (its default, 30 s, would let one run 30 s over).
    connectionsCheckingInterval: Math.max(50, Math.min(1_000, Math.floor(requestTimeout / 4))),
  };
  const server = tlsOptions ? createHttpsServer({ ...tlsOptions, ...timeouts }, onRequest) : createHttpServer(timeouts, onRequest);
  const stopTlsReload =
    tlsOptions && options.tlsFiles
      ? reloadServerTlsOnChange(server as HttpsServer, options.tlsFiles, (error) =>
          logger.error({ err: error }, 'renewed TLS certificate could not be loaded; keeping the previous one'),
        )
      : undefined;
  if (options.onUpgrade) server.on('upgrade', options.onUpgrade);
  server.maxConnections = options.maxConnections ?? defaultMaxConnections;
  const dropped = new Counter({
    name: 'http_connections_dropped_total',
    help: 'Connections closed as they were accepted because the server held its maxConnections (MAX_CONNECTIONS)',
    registers: [registry],
  });
  new Gauge({
    name: 'http_open_connections',
    help: 'Connections the server holds open (keep-alive, in flight, WebSocket and SSE), against its maxConnections',
    registers: [registry],
    async collect() {
      this.set(await new Promise<number>((resolve) => server.getConnections((_error, count) => resolve(count ?? 0))));
    },
  });
  const warnDropped = throttledWarning(logger);
  server.on('drop', () => {
    dropped.inc();
    warnDropped(undefined, `connection refused: the server holds its limit of ${server.maxConnections} open connections (MAX_CONNECTIONS)`);
  });
  let url = '';

  const close = () => {
    closing ??= (async () => {
      draining = true;
      logger.info({ inFlight }, 'shutting down: no new connections, draining in-flight requests');
      const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      const idle = inFlight === 0 ? Promise.resolve() : new Promise<void>((resolve) => (idleResolve = resolve));
      const timedOut = await Promise.race([
        idle.then(() => false),
        new Promise<boolean>((resolve) => setTimeout(() => resolve(true), shutdownTimeoutMs).unref()),
      ]);
      if (timedOut) logger.warn({ inFlight }, 'shutdown bound reached; closing remaining connections');
      server.closeAllConnections();
      await stopped;
      stopTlsReload?.();
      await options.onClose?.();
      logger.info('shut down');
    })();
    return closing;
  };

  return {
    server,
    get url() {
      return url;
    },
    get draining() {
      return draining;
    },
    listen(port, host = '127.0.0.1') {
      return new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          server.off('error', reject);
          const address = server.address() as AddressInfo;
          const shownHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;
          url = `${tlsOptions ? 'https' : 'http'}://${shownHost}:${address.port}`;
          logger.info({ url }, 'listening');
          resolve(address);
        });
      });
    },
    close,
  };
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

/**
 * Stops the given servers on SIGTERM/SIGINT and exits 0 once they are closed
 * (1 if closing failed). Returns a function that removes the handlers.
 */
export function exitOnSignals(logger: Logger, close: () => Promise<void>): () => void {
  const onSignal = (signal: NodeJS.Signals) => {
    logger.info({ signal }, 'signal received');
    close().then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
  return () => {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
  };
}

/** Reads a request body up to `maxBytes`; rejects with `BodyTooLargeError` past it. */
/**
 * Whether a `Content-Type` declares a charset other than UTF-8 (`application/json;
 * charset=iso-8859-1`): JSON is UTF-8 (RFC 8259), so the router and the bridge refuse such a
 * body with 415 rather than read it with replacement characters. One `includes` when the header
 * names no charset, as on almost every request.
 */
export function declaresNonUtf8Charset(contentType: string): boolean {
  if (!contentType.includes('charset')) return false;
  const charset = /;\s*charset\s*=\s*"?([^";\s]+)/i.exec(contentType)?.[1];
  return charset !== undefined && !/^utf-?8$/i.test(charset);
}

export class BodyTooLargeError extends Error {
  readonly limit: number;
  constructor(limit: number) {
    super(`Request body exceeds ${limit} bytes`);
    this.limit = limit;
  }
}

/** The connection closed before the request body was complete: nobody is left to answer. */
export class ClientGoneError extends Error {
  constructor() {
    super('The client closed the connection before its request body was complete');
    this.name = 'ClientGoneError';
  }
}

/**
 * With raw-body (the reader body-parser uses): 'data'/'end' listeners, the declared
 * Content-Length checked against the limit before reading, and a body past the limit paused
 * rather than read on; once the 413 is sent, Node discards the rest and the keep-alive
 * connection serves its next request. It replaced a `for await` over the request, whose async
 * iterator and end-of-stream tracking cost ~25 µs of CPU per request on the bench machine, a
 * third of a trivial request's whole cost (bench/RESULTS.md, change 30), and which left a
 * keep-alive connection stalled after refusing a chunked body past the limit. A client that went
 * away mid-body is `ClientGoneError`; other errors are raw-body's, with their `status` and `type`.
 */
export async function readBody(req: IncomingMessage, maxBytes: number): Promise<Buffer> {
  try {
    return await getRawBody(req, { limit: maxBytes, length: req.headers['content-length'] });
  } catch (error) {
    const type = (error as { type?: unknown }).type;
    if (type === 'entity.too.large') throw new BodyTooLargeError(maxBytes);
    if (type === 'request.aborted') throw new ClientGoneError();
    throw error;
  }
}
