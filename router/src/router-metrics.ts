import { latencyBuckets } from '@ghostpay/platform';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

/** The router's metrics (names are a contract with the Grafana dashboards). */
export function createRouterMetrics(registry: Registry) {
  return {
    requestDuration: new Histogram({
      name: 'graphql_request_duration_seconds',
      help: 'GraphQL request duration by operation name and type',
      labelNames: ['operation_name', 'operation_type'] as const,
      buckets: latencyBuckets,
      registers: [registry],
    }),
    errors: new Counter({
      name: 'graphql_errors_total',
      help: 'GraphQL errors returned to clients, by code',
      labelNames: ['code'] as const,
      registers: [registry],
    }),
    rateLimited: new Counter({
      name: 'rate_limited_requests_total',
      help: 'Requests refused by the rate limiter, by identity kind (api_key or client_address)',
      labelNames: ['scope'] as const,
      registers: [registry],
    }),
    redisFallback: new Counter({
      name: 'rate_limit_redis_fallback_total',
      help: 'Rate-limit decisions taken by the local in-memory limiter because Redis did not answer',
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
    requestEventErrors: new Counter({
      name: 'router_request_event_errors_total',
      help: 'Request-event hook invocations that threw (the request is never affected)',
      registers: [registry],
    }),
  };
}

export type RouterMetrics = ReturnType<typeof createRouterMetrics>;
