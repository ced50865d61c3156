import { collectDefaultMetrics, Histogram, Registry } from 'prom-client';

export { Registry };

/**
 * A registry with Node runtime metrics and `service` as a default label, so every
 * metric a service exposes can be told apart when several run in one process.
 */
export function createMetricsRegistry(service: string): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ service });
  collectDefaultMetrics({ register: registry });
  return registry;
}

/** Buckets suited to an API whose SLO is p95 < 100 ms. */
export const latencyBuckets = [0.002, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5, 5];

export function createHttpDurationHistogram(registry: Registry) {
  return new Histogram({
    name: 'http_request_duration_seconds',
    help: 'HTTP request duration by method, route template and status code',
    labelNames: ['method', 'route', 'status_code'] as const,
    buckets: latencyBuckets,
    registers: [registry],
  });
}
