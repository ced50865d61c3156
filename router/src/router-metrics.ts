import { httpStatusFor, latencyBuckets } from '@ghostpay/platform';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { eventReadOutcomes } from './subscriptions/index.ts';

/** The router's metrics (names are a contract with the Grafana dashboards). */
export function createRouterMetrics(registry: Registry) {
  const subscriptionEventReads = new Histogram({
    name: 'graphql_subscription_event_read_duration_seconds',
    help: "Per-event re-reads of open subscriptions (the client's selection run again through the gateway when the upstream reports an event), by outcome: sent, unchanged, failed, ended, abandoned",
    labelNames: ['outcome'] as const,
    buckets: latencyBuckets,
    registers: [registry],
  });
  // A closed set: every outcome is exposed from the start, so a rate reads 0 rather than no data.
  for (const outcome of eventReadOutcomes) subscriptionEventReads.zero({ outcome });
  return {
    /**
     * One observation per GraphQL operation: each POST/GET /graphql operation that reached Apollo's
     * pipeline (each batch entry), labelled with its type; and each subscribe attempt (WebSocket or
     * SSE) that reached its operation, once, as `operation_type="subscription"` with the time to its
     * first answer (`countSubscribeAnswer`). A subscription's own queries (its first payload, its
     * per-event re-reads) are not operations of their own: re-reads are in `subscriptionEventReads`.
     */
    requestDuration: new Histogram({
      name: 'graphql_request_duration_seconds',
      help: 'GraphQL operation duration by operation name and type (a subscription: each subscribe attempt, until its first answer)',
      labelNames: ['operation_name', 'operation_type'] as const,
      buckets: latencyBuckets,
      registers: [registry],
    }),
    subscriptionEventReads,
    errors: new Counter({
      name: 'graphql_errors_total',
      help: 'GraphQL errors returned to clients, by code',
      labelNames: ['code'] as const,
      registers: [registry],
    }),
    rateLimited: new Counter({
      name: 'rate_limited_requests_total',
      help: 'Requests refused by the rate limiter, by identity kind (user: a token, limited per user; client_address: no token)',
      labelNames: ['scope'] as const,
      registers: [registry],
    }),
    redisFallback: new Counter({
      name: 'rate_limit_redis_fallback_total',
      help: 'Rate-limit and subscription-limit decisions taken by this process alone because Redis did not answer',
      registers: [registry],
    }),
    subgraphFetchDuration: new Histogram({
      name: 'subgraph_fetch_duration_seconds',
      help: 'Subgraph fetch duration by subgraph and outcome (success, error, timeout, rejected)',
      labelNames: ['subgraph', 'outcome'] as const,
      buckets: latencyBuckets,
      registers: [registry],
    }),
    breakerState: new Gauge({
      name: 'circuit_breaker_state',
      help: 'Circuit breaker state per subgraph: 0 closed, 1 half-open, 2 open',
      labelNames: ['subgraph'] as const,
      registers: [registry],
    }),
    /**
     * GraphQL HTTP responses that failed on our side although their status is below 500: once per
     * response (a batch is one), whatever number of errors it carries. GraphQL answers a subgraph
     * outage with HTTP 200 and partial data, so the availability SLI counts these next to the 5xx;
     * `graphql_errors_total` counts errors, not requests, and cannot be divided by requests.
     */
    serverErrorResponses: new Counter({
      name: 'router_graphql_server_error_responses_total',
      help: 'GraphQL HTTP responses with a status below 500 carrying at least one server-side error code (one that maps to a 5xx: SUBGRAPH_UNAVAILABLE, SERVICE_UNAVAILABLE, INTERNAL_SERVER_ERROR), once per response',
      registers: [registry],
    }),
    requestEventErrors: new Counter({
      name: 'router_request_event_errors_total',
      help: 'Request-event hook invocations that threw (the request is never affected)',
      registers: [registry],
    }),
  };
}

export type RouterMetrics = ReturnType<typeof createRouterMetrics>;

/**
 * Whether a GraphQL HTTP response failed on the router's side without a 5xx status: one of its
 * error codes is one platform maps to a 5xx. A 5xx response is already a failure by its status.
 */
export function isServerErrorResponse(httpStatus: number, errorCodes: readonly string[]): boolean {
  return httpStatus < 500 && errorCodes.some((code) => httpStatusFor(code) >= 500);
}

/**
 * The `route` label under which WebSocket subscribe attempts are counted in
 * `http_request_duration_seconds` (a label only: the WebSocket itself is on `/graphql`).
 */
export const webSocketSubscribeRoute = '/graphql/ws';

/**
 * The `status_code` a WebSocket subscribe attempt is counted with: what the same answer gets as an
 * SSE request. A subscription that started is a 200, whatever its first payload carries (a
 * server-side code there counts in `router_graphql_server_error_responses_total`, as for a 200
 * stream); a refusal (a graphql-ws `error`, or a `connection_init` refused by closing) gets the
 * highest status platform maps its codes to, so one that failed on our side (`SERVICE_UNAVAILABLE`,
 * …) is a 5xx. The label values are platform's table's, a bounded set.
 */
export function webSocketSubscribeStatus(refused: boolean, errorCodes: readonly string[]): number {
  if (!refused) return 200;
  return errorCodes.length > 0 ? Math.max(...errorCodes.map((code) => httpStatusFor(code))) : 500;
}

/**
 * Counts one WebSocket subscribe attempt (a `subscribe` message, or a `connection_init` refused) as
 * the availability SLI counts an SSE request: once, when its first answer goes out, in the
 * platform's `http_request_duration_seconds` under `route="/graphql/ws"` with
 * `webSocketSubscribeStatus`, and in `router_graphql_server_error_responses_total` when it started
 * but its first payload failed on our side. The time observed is the time to that first answer,
 * never the subscription's lifetime; latency queries leave the route out all the same (as
 * `/graphql/stream`), since its duration is not a request's. Without this a WebSocket subscribe
 * was counted nowhere: a router failing every one of them left the SLI at 100%.
 */
export function countWebSocketSubscribe(
  registry: Registry,
  metrics: RouterMetrics,
  attempt: { refused: boolean; errorCodes: readonly string[]; seconds: number },
): void {
  const status = webSocketSubscribeStatus(attempt.refused, attempt.errorCodes);
  // The platform server's request histogram (createServiceServer registers it in the router's registry).
  const requests = registry.getSingleMetric('http_request_duration_seconds') as Histogram<'method' | 'route' | 'status_code'> | undefined;
  requests?.observe({ method: 'GET', route: webSocketSubscribeRoute, status_code: String(status) }, attempt.seconds);
  if (isServerErrorResponse(status, attempt.errorCodes)) metrics.serverErrorResponses.inc();
}

/**
 * Counts one subscribe attempt's first answer (WebSocket or SSE, refused or started) in the GraphQL
 * metrics, the same way on both transports and as POST /graphql counts a response: every error code
 * it carried in `graphql_errors_total` (a refusal's, whoever refused it: the router's token, rate and
 * body checks, the SSE request checks, the WebSocket's `connection_init`, the gateway's limits,
 * validation, the first query; or the errors of a first payload), and, when the attempt reached its
 * operation (as a POST /graphql reaches Apollo's pipeline), one `graphql_request_duration_seconds`
 * observation labelled `operation_type="subscription"` with the time to that answer. Its first query
 * and its per-event re-reads run through Apollo too, but are not operations of their own.
 */
export function countSubscribeAnswer(
  metrics: RouterMetrics,
  operationLabel: (operationName: string | null | undefined) => string,
  answer: { errorCodes: readonly string[]; operationName?: string; operationSeconds?: number },
): void {
  for (const code of answer.errorCodes) metrics.errors.inc({ code });
  if (answer.operationSeconds === undefined) return;
  metrics.requestDuration.observe(
    { operation_name: operationLabel(answer.operationName), operation_type: 'subscription' },
    answer.operationSeconds,
  );
}

/**
 * The `operation_name` label of an operation. Operation names are the client's text: each new
 * one would be a new histogram (a dozen series, kept for the process's life), so a caller
 * sending `query R1 …`, `query R2 …` grew the router's memory and every scrape without bound.
 * Names of trusted operations (the persisted-query manifests) always get their own label; any
 * other name gets one while fewer than `maxOther` have, later ones share `(other)`. Every label
 * is cut to `maxLength` characters.
 */
export function createOperationLabels(trustedNames: Iterable<string | undefined>, options: { maxOther?: number; maxLength?: number } = {}) {
  const maxOther = options.maxOther ?? 100;
  const maxLength = options.maxLength ?? 100;
  const trusted = new Set<string>();
  for (const name of trustedNames) if (name) trusted.add(name.slice(0, maxLength));
  const other = new Set<string>();
  return (operationName: string | null | undefined): string => {
    if (!operationName) return '(anonymous)';
    const name = operationName.slice(0, maxLength);
    if (trusted.has(name) || other.has(name)) return name;
    if (other.size >= maxOther) return '(other)';
    other.add(name);
    return name;
  };
}
