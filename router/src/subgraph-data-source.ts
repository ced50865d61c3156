import type { GraphQLDataSource, GraphQLDataSourceProcessOptions } from '@apollo/gateway';
import { type ClientTlsOptions, ErrorCode, GhostPayError, requestText, type TextResponse } from '@ghostpay/platform';
import { Pool } from 'undici';
import { BreakerState, type CircuitBreaker, createCircuitBreaker } from './circuit-breaker.ts';
import type { RouterMetrics } from './router-metrics.ts';

/** The part of the router's request context a subgraph call reads and writes. */
export interface SubgraphCallContext {
  /** Only these headers reach subgraphs: Authorization, traceparent, tracestate, x-request-id, and the router's own x-forwarded-for. */
  forwardHeaders: Record<string, string>;
  /** The client operation's type; only queries are ever retried. */
  operationType?: string;
  subgraphTimings: { subgraph: string; ms: number; outcome: string }[];
}

export interface SubgraphDataSourceOptions {
  name: string;
  url: string;
  /** Abort a call after this long. @default 5000 */
  timeoutMs?: number;
  /** Keep-alive connections per subgraph. @default 32 */
  connections?: number;
  breaker?: { failureThreshold?: number; openMs?: number };
  retryBudget: RetryBudget;
  metrics?: RouterMetrics;
  /** CA to trust and client certificate to present over https (mTLS to subgraphs). @default none */
  tls?: ClientTlsOptions;
}

/**
 * Retries are a budget, not a habit: each first attempt deposits `ratio` of a retry, at most
 * `max` are banked, so retries stay a small fraction of traffic when a subgraph is struggling.
 */
export interface RetryBudget {
  deposit(): void;
  withdraw(): boolean;
}

export function createRetryBudget(options: { ratio?: number; max?: number } = {}): RetryBudget {
  const ratio = options.ratio ?? 0.1;
  const max = options.max ?? 10;
  let tokens = max;
  return {
    deposit() {
      tokens = Math.min(max, tokens + ratio);
    },
    withdraw() {
      if (tokens < 1) return false;
      tokens -= 1;
      return true;
    },
  };
}

/** A failure that means the subgraph did not answer (as opposed to answering with errors). */
class SubgraphCallError extends Error {
  readonly outcome: 'timeout' | 'network' | 'status';
  readonly retryable: boolean;
  constructor(message: string, outcome: 'timeout' | 'network' | 'status', retryable: boolean) {
    super(message);
    this.outcome = outcome;
    this.retryable = retryable;
  }
}

const retryableCodes = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED']);

/**
 * A gateway data source over an undici keep-alive `Pool`, with a per-subgraph timeout and
 * circuit breaker. When the subgraph does not answer (or the breaker is open) the fetch fails
 * with SUBGRAPH_UNAVAILABLE: the gateway nulls that subgraph's fields and keeps the rest.
 * Connection failures of queries are retried once when the retry budget allows; mutations never.
 */
export class SubgraphDataSource implements GraphQLDataSource<Record<string, unknown>> {
  readonly name: string;
  readonly url: URL;
  readonly breaker: CircuitBreaker;
  private readonly pool: Pool;
  private readonly timeoutMs: number;
  private readonly retryBudget: RetryBudget;
  private readonly metrics: RouterMetrics | undefined;

  constructor(options: SubgraphDataSourceOptions) {
    this.name = options.name;
    this.url = new URL(options.url);
    this.timeoutMs = options.timeoutMs ?? 5_000;
    this.retryBudget = options.retryBudget;
    this.metrics = options.metrics;
    this.pool = new Pool(this.url.origin, {
      connections: options.connections ?? 32,
      keepAliveTimeout: 30_000,
      pipelining: 1,
      ...(options.tls ? { connect: { ...options.tls } } : {}),
    });
    this.breaker = createCircuitBreaker({
      ...options.breaker,
      onStateChange: (state) => this.metrics?.breakerState.set({ subgraph: this.name }, state),
    });
    this.metrics?.breakerState.set({ subgraph: this.name }, BreakerState.closed);
  }

  async process(options: GraphQLDataSourceProcessOptions<Record<string, unknown>>) {
    const { http: _http, ...request } = options.request;
    return this.processSerialized(JSON.stringify(request), options.context);
  }

  /** `process` with the request body already serialized (the compiled executor's pre-serialized request prefixes). */
  async processSerialized(body: string, contextValue: unknown) {
    const context = (contextValue ?? {}) as Partial<SubgraphCallContext>;
    const headers: Record<string, string> = { ...context.forwardHeaders, 'content-type': 'application/json', accept: 'application/json' };
    const isQuery = context.operationType === 'query';
    const started = performance.now();
    let attempt = 0;
    this.retryBudget.deposit();
    for (;;) {
      if (!this.breaker.tryAcquire()) {
        this.observe(context, started, 'rejected');
        throw this.unavailable('circuit open');
      }
      try {
        const result = await this.send(body, headers);
        this.breaker.success();
        this.observe(context, started, 'success');
        return result;
      } catch (error) {
        if (!(error instanceof SubgraphCallError)) throw error;
        this.breaker.failure();
        if (isQuery && error.retryable && attempt === 0 && this.retryBudget.withdraw()) {
          attempt++;
          continue;
        }
        this.observe(context, started, error.outcome === 'timeout' ? 'timeout' : 'error');
        throw this.unavailable(error.message);
      }
    }
  }

  private async send(body: string, headers: Record<string, string>) {
    // One timer for the whole call (answer and body), cleared when it ends: AbortSignal.timeout
    // would leave a timer per call to fire seconds later and build a DOMException for nothing.
    const deadline = new AbortController();
    const timer = setTimeout(() => deadline.abort(), this.timeoutMs);
    let response: TextResponse;
    try {
      // requestText, not pool.request: see its comment (request()'s AsyncResource per call kept
      // whole request graphs alive through scavenges).
      response = await requestText(this.pool, {
        path: `${this.url.pathname}${this.url.search}`,
        method: 'POST',
        headers,
        body,
        signal: deadline.signal,
      });
    } catch (error) {
      const err = error as { code?: string; message?: string };
      if (deadline.signal.aborted) throw new SubgraphCallError(`timed out after ${this.timeoutMs} ms`, 'timeout', false);
      throw new SubgraphCallError(err.code ?? err.message ?? 'network error', 'network', retryableCodes.has(err.code ?? ''));
    } finally {
      clearTimeout(timer);
    }
    // A GraphQL response (even with a 4xx status, as Apollo Server sends for errors) is an answer.
    const contentType = String(response.headers['content-type'] ?? '');
    if (contentType.includes('json')) {
      try {
        const parsed = JSON.parse(response.text) as { data?: unknown; errors?: unknown };
        if (parsed && typeof parsed === 'object' && ('data' in parsed || 'errors' in parsed)) {
          if (response.statusCode >= 500 && !('data' in parsed && parsed.data)) {
            throw new SubgraphCallError(`status ${response.statusCode}`, 'status', false);
          }
          return parsed as Awaited<ReturnType<GraphQLDataSource['process']>>;
        }
      } catch (error) {
        if (error instanceof SubgraphCallError) throw error;
      }
    }
    throw new SubgraphCallError(`status ${response.statusCode}`, 'status', response.statusCode === 503);
  }

  private unavailable(reason: string) {
    return new GhostPayError(ErrorCode.SUBGRAPH_UNAVAILABLE, `Subgraph "${this.name}" is unavailable (${reason})`, {
      extensions: { serviceName: this.name },
    });
  }

  private observe(context: Partial<SubgraphCallContext>, started: number, outcome: string) {
    const ms = performance.now() - started;
    this.metrics?.subgraphFetchDuration.observe({ subgraph: this.name, outcome }, ms / 1000);
    context.subgraphTimings?.push({ subgraph: this.name, ms, outcome });
  }

  async close() {
    await this.pool.close();
  }
}
