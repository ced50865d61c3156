import { ResponseTooLargeError, requestText, type TextResponse } from '@ghostpay/platform';
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
  /** Time to wait for the router's response headers and body. @default 10000 */
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

/** Thrown when the router cannot be reached or does not answer in time. */
export class RouterUnreachableError extends Error {}

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
  const graphqlPath = `${url.pathname}${url.search}`;

  return {
    async execute({ operationName, sha256Hash, variables, headers }) {
      const payload = JSON.stringify({
        operationName,
        variables,
        extensions: { persistedQuery: { version: 1, sha256Hash } },
      });
      let response: TextResponse;
      try {
        // requestText, not pool.request: its comment says why (young-generation survivors).
        response = await requestText(pool, {
          method: 'POST',
          path: graphqlPath,
          headers: { ...headers, 'content-type': 'application/json', accept: 'application/json' },
          body: payload,
          maxResponseBytes,
        });
      } catch (error) {
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
