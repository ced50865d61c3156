/**
 * GraphQL answers server-side failures with HTTP 200 and an error code in the body (a subgraph
 * down: SUBGRAPH_UNAVAILABLE with partial data). Every place that judges the API's health (the
 * availability SLI, the error-rate alert, the overview dashboard, the deploy's rollback check)
 * must count those responses next to the 5xx, as requests: the router's
 * router_graphql_server_error_responses_total (once per response below 500 that carries a code
 * platform maps to a 5xx), never graphql_errors_total, which counts errors (a response with two
 * counts two, and the ratio over requests over-counts). The promtool tests in
 * grafana/alerts/tests/graphql-errors.test.yaml prove the alerts fire on such responses at the
 * right ratio and not on client errors; router/test/server-error-responses.test.ts and
 * prometheus.test.ts scrape the counter from a real router.
 */
import { ErrorCode, httpStatusFor } from '@ghostpay/platform';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { contractMetrics } from '../src/metric-names.ts';
import { readRepoFile } from '../src/repo.ts';

const failedResponses = 'router_graphql_server_error_responses_total';

/** The codes platform maps to a 5xx: failures on our side, whatever HTTP status carried them. */
const serverCodes = Object.values(ErrorCode)
  .filter((code) => httpStatusFor(code) >= 500)
  .sort();

/** The label matchers of every selector of `metric` in a query ('' for none; quotes unescaped). */
function selectors(expr: string, metric: string): string[] {
  return [...expr.replaceAll('\\"', '"').matchAll(new RegExp(`\\b${metric}\\b(?:\\{([^}]*)\\})?`, 'g'))].map(
    ([, matchers]) => matchers ?? '',
  );
}

/** What a failure ratio must hold: the 5xx, the router's failed responses once, and no error count. */
function expectFailureRatio(expr: string, label: string) {
  expect(expr.replaceAll('\\"', '"'), label).toContain('status_code=~"5.."');
  expect(selectors(expr, failedResponses), label).toHaveLength(1);
  expect(expr, `${label} divides errors by requests`).not.toMatch(/\bgraphql_errors_total\b/);
}

describe('responses that failed server-side below 500 count as failed requests', () => {
  it('are the responses carrying a code platform maps to a 5xx', () => {
    expect(serverCodes).toEqual(['INTERNAL_SERVER_ERROR', 'SERVICE_UNAVAILABLE', 'SUBGRAPH_UNAVAILABLE']);
    // The router decides with the same table (router-metrics.ts: httpStatusFor(code) >= 500).
    expect(readRepoFile('router/src/router-metrics.ts')).toMatch(
      /httpStatus < 500 && errorCodes\.some\(\(code\) => httpStatusFor\(code\) >= 500\)/,
    );
  });

  it('is a contract metric the router registers', () => {
    expect(contractMetrics).toContain(failedResponses);
    expect(readRepoFile('router/src/router-metrics.ts')).toContain(`name: '${failedResponses}'`);
  });

  const rules = parse(readRepoFile('grafana/alerts/ghostpay-rules.yaml')) as { groups: { rules: { record?: string; expr: string }[] }[] };
  const records = rules.groups.flatMap((g) => g.rules).filter((r) => r.record);
  const failureRecords = records.filter(
    (r) => r.record!.startsWith('ghostpay:slo_errors:') || r.record === 'service:http_errors:ratio_rate5m',
  );

  it.each(failureRecords.map((r) => [r.record!, r.expr]))('%s counts them next to the 5xx, once per response', (record, expr) => {
    expectFailureRatio(expr, record);
    // The SLI is the edge's: the router's own series only.
    if (record.startsWith('ghostpay:')) expect(selectors(expr, failedResponses)).toEqual(['service="router"']);
  });

  it('covers every availability window and the per-service ratio the error-rate alert reads', () => {
    expect(failureRecords.map((r) => r.record)).toEqual([
      'ghostpay:slo_errors:ratio_rate5m',
      'ghostpay:slo_errors:ratio_rate30m',
      'ghostpay:slo_errors:ratio_rate1h',
      'ghostpay:slo_errors:ratio_rate6h',
      'ghostpay:slo_errors:ratio_rate3d',
      'service:http_errors:ratio_rate5m',
    ]);
    const alerts = rules.groups.flatMap((g) => g.rules) as { alert?: string; expr: string }[];
    expect(alerts.find((a) => a.alert === 'GhostPayHighErrorRate')?.expr).toContain('service:http_errors:ratio_rate5m');
  });

  it("are in the deploy workflow's rollback check for the new colour", () => {
    const workflow = readRepoFile('.github/workflows/deploy.yml');
    const errorsQuery = /errors=\$\(promq "(.*)"\)$/m.exec(workflow)?.[1] ?? '';
    expectFailureRatio(errorsQuery, 'check_color');
    expect(selectors(errorsQuery, failedResponses)).toEqual(['color="$color",service="router"']);
  });

  it('are in the overview dashboard’s error rate and availability panels', () => {
    const dashboard = JSON.parse(readRepoFile('grafana/dashboards/ghostpay-overview.json')) as {
      panels: { title: string; description?: string; targets?: { expr: string }[] }[];
    };
    for (const prefix of ['Error rate', 'Availability']) {
      const panel = dashboard.panels.find((p) => p.title.startsWith(prefix));
      expect(panel, prefix).toBeDefined();
      expectFailureRatio(panel!.targets![0]!.expr, prefix);
      expect(panel!.description, prefix).toContain(failedResponses);
    }
  });
});
