import { ResponseTooLargeError, requestText, type TextDispatcher, type TextResponse } from '@ghostpay/platform';
import { Pool } from 'undici';

/** A GraphQL error as the router answers it. */
export interface GraphQLResponseError {
  message: string;
  path?: (string | number)[];
  extensions?: { code?: string; [key: string]: unknown };
}

export interface GraphQLResponseBody {
  data?: Record<string, unknown> | null;
  errors?: GraphQLResponseError[];
}

export interface RouterResult {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  /** The parsed GraphQL response, or undefined when the router did not answer JSON. */
  body: GraphQLResponseBody | undefined;
}

export interface RouterClientOptions {
  /** The router's GraphQL endpoint, e.g. `http://127.0.0.1:4000/graphql`. */
  url: string;
  /** Keep-alive connections to the router. @default 64 */
  connections?: number;
  /**
   * Time to wait for the router's response headers and body; also how long a call may wait for
   * a free connection: one still queued after it is never sent (`RouterUnreachableError` with
   * `sent: false`). @default 10000
   */
  timeoutMs?: number;
  /** How long an idle keep-alive connection stays open. @default 30000 */
  keepAliveTimeoutMs?: number;
  /** The largest router response the bridge reads. @default 5 MiB */
  maxResponseBytes?: number;
}

export interface PersistedOperationCall {
  operationName: string;
  sha256Hash: string;
  variables: Record<string, unknown>;
  /** Headers forwarded to the router (authorization, x-request-id, traceparent). */
  headers: Record<string, string>;
}

export interface RouterClient {
  /** Runs a persisted operation by hash only: the query text never leaves the bridge. */
  execute(call: PersistedOperationCall): Promise<RouterResult>;
  /** Resolves when the router answers its `/healthz`; throws otherwise. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/**
 * Thrown when the router cannot be reached or does not answer in time. `sent: false` when the
 * call was never written to the router (it waited out `timeoutMs` for a connection): its
 * outcome is known, nothing ran.
 */
export class RouterUnreachableError extends Error {
  readonly sent: boolean;
  constructor(message: string, options: ErrorOptions & { sent?: boolean } = {}) {
    super(message, options);
    this.sent = options.sent ?? true;
  }
}

/** A call that waited out its time for a free connection; thrown before anything is written. */
class QueuedTooLongError extends Error {}

/**
 * The bridge's only way to the router: an undici Pool of keep-alive connections. Requests
 * are never retried here: a mutation might have run, and the router retries queries itself.
 */
export function createRouterClient(options: RouterClientOptions): RouterClient {
  const url = new URL(options.url);
  const timeoutMs = options.timeoutMs ?? 10_000;
  const maxResponseBytes = options.maxResponseBytes ?? 5 * 1024 * 1024;
  const pool = new Pool(url.origin, {
    connections: options.connections ?? 64,
    keepAliveTimeout: options.keepAliveTimeoutMs ?? 30_000,
    headersTimeout: timeoutMs,
    bodyTimeout: timeoutMs,
  });
  const poolDispatcher: TextDispatcher = pool;
  const graphqlPath = `${url.pathname}${url.search}`;

  return {
    async execute({ operationName, sha256Hash, variables, headers }) {
      // undici's headersTimeout starts once a request is written, so time spent queued for one
      // of the pool's connections is bounded by nothing: with the router slow and every
      // connection busy, calls would wait on, and then run mutations whose clients had long
      // given up (and retried). A call still queued after timeoutMs is dropped as it leaves the
      // queue, unsent. Costs a clock read and a closure per call: no timer.
      const deadline = performance.now() + timeoutMs;
      const dispatcher: TextDispatcher = {
        dispatch(dispatchOptions, handler) {
          const start = handler.onRequestStart;
          // Called as the request is about to be written to a connection. Throwing here (undici
          // catches it and fails the request) keeps the keep-alive connection for the next one,
          // where controller.abort would destroy it.
          handler.onRequestStart = (controller) => {
            if (performance.now() > deadline) throw new QueuedTooLongError(`no router connection free within ${timeoutMs} ms`);
            start.call(handler, controller);
          };
          return poolDispatcher.dispatch(dispatchOptions, handler);
        },
      };
      const payload = JSON.stringify({
        operationName,
        variables,
        extensions: { persistedQuery: { version: 1, sha256Hash } },
      });
      let response: TextResponse;
      try {
        // requestText, not pool.request: its comment says why (young-generation survivors).
        response = await requestText(dispatcher, {
          method: 'POST',
          path: graphqlPath,
          headers: { ...headers, 'content-type': 'application/json', accept: 'application/json' },
          body: payload,
          maxResponseBytes,
        });
      } catch (error) {
        if (error instanceof QueuedTooLongError) {
          throw new RouterUnreachableError(`router call not sent: ${error.message}`, { cause: error, sent: false });
        }
        const what = error instanceof ResponseTooLargeError ? 'router response failed' : 'router unreachable';
        throw new RouterUnreachableError(`${what}: ${(error as Error).message}`, { cause: error });
      }
      let body: GraphQLResponseBody | undefined;
      try {
        const parsed = JSON.parse(response.text) as unknown;
        body = parsed && typeof parsed === 'object' ? (parsed as GraphQLResponseBody) : undefined;
      } catch {
        body = undefined;
      }
      return { status: response.statusCode, headers: response.headers, body };
    },
    async ping() {
      const response = await pool.request({ method: 'GET', path: '/healthz', headersTimeout: 2_000, bodyTimeout: 2_000 });
      await response.body.dump();
      if (response.statusCode !== 200) throw new Error(`router /healthz answered ${response.statusCode}`);
    },
    async close() {
      await pool.close();
    },
  };
}
