import { createMetricsRegistry } from '@ghostpay/platform';

/** The metric names the services promise (the contract in the helper guide / grafana/README.md). */
export const contractMetrics = [
  'http_request_duration_seconds',
  'http_open_connections',
  'http_connections_dropped_total',
  'graphql_request_duration_seconds',
  'graphql_errors_total',
  'graphql_subscription_event_read_duration_seconds',
  'router_graphql_server_error_responses_total',
  'rate_limited_requests_total',
  'subgraph_fetch_duration_seconds',
  'circuit_breaker_state',
  'charges_total',
  'charges_settlement_due',
  'charges_settlement_oldest_due_seconds',
  'charges_settlement_passed_over',
  'analytics_events_dropped_total',
  'analytics_events_sent_total',
] as const;

/** Every series name a contract metric or a prom-client default metric produces, plus `up`. */
export async function knownSeriesNames(): Promise<Set<string>> {
  const names = new Set<string>(['up']);
  const addHistogram = (name: string) => {
    for (const suffix of ['_bucket', '_sum', '_count']) names.add(`${name}${suffix}`);
  };
  for (const name of contractMetrics) {
    // The contract's histograms are durations; `charges_settlement_oldest_due_seconds` is a gauge.
    if (name.endsWith('_duration_seconds')) addHistogram(name);
    else names.add(name);
  }
  // Read the defaults from a real platform registry rather than a hand-written list.
  for (const metric of await createMetricsRegistry('deploy-checks').getMetricsAsJSON()) {
    if (String(metric.type) === 'histogram') addHistogram(metric.name);
    else names.add(metric.name);
  }
  return names;
}

const promqlWords = new Set([
  'sum',
  'max',
  'min',
  'avg',
  'count',
  'rate',
  'irate',
  'increase',
  'changes',
  'histogram_quantile',
  'topk',
  'bottomk',
  'vector',
  'by',
  'without',
  'and',
  'or',
  'unless',
  'on',
  'ignoring',
  'group_left',
  'group_right',
  'label_values',
  'abs',
  'clamp_min',
  'clamp_max',
  'time',
  'offset',
  'bool',
  'avg_over_time',
  'max_over_time',
  'min_over_time',
]);

/** Metric names referenced by a PromQL expression (identifiers followed by a selector, range or end of an operand). */
export function metricNamesIn(expr: string): string[] {
  const withoutStrings = expr.replace(/"(?:[^"\\]|\\.)*"/g, '""');
  const withoutMatchers = withoutStrings.replace(/\{[^}]*\}/g, '{}');
  const withoutLabelLists = withoutMatchers.replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, '$1');
  const withoutDurations = withoutLabelLists.replace(/\[[^\]]*\]/g, '[]');
  const names = new Set<string>();
  for (const match of withoutDurations.matchAll(/(?<![\w:$.])([a-zA-Z_:][\w:]*)(?=\s*(\{|\[|\)|$|\s*[-+*/><=!]|\s+(and|or|unless)\b))/g)) {
    const name = match[1]!;
    if (promqlWords.has(name) || /^\d/.test(name)) continue;
    names.add(name);
  }
  return [...names];
}
