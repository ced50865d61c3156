/**
 * GraphQL answers server-side failures with HTTP 200 and an error code in the body (a subgraph
 * down: SUBGRAPH_UNAVAILABLE with partial data). Every place that judges the API's health
 * (the availability SLI, the error-rate alert, the overview dashboard, the deploy's rollback
 * check) must count those codes from the router's graphql_errors_total next to the 5xx; the
 * promtool tests in grafana/alerts/tests/graphql-errors.test.yaml prove the alerts fire on it.
 */
import { ErrorCode, httpStatusFor } from '@ghostpay/platform';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { readRepoFile } from '../src/repo.ts';

/** The codes platform maps to a 5xx: failures on our side, whatever HTTP status carried them. */
const serverCodes = Object.values(ErrorCode)
  .filter((code) => httpStatusFor(code) >= 500)
  .sort();

/** The code sets of every `graphql_errors_total{…code=~"…"…}` selector in a query. */
function graphqlErrorCodeSets(expr: string): string[][] {
  return [...expr.matchAll(/graphql_errors_total\{([^}]*)\}/g)].map(([, matchers]) => {
    const codes = /code=~\\?"([^"\\]*)\\?"/.exec(matchers!)?.[1] ?? '';
    return codes.split('|').sort();
  });
}

describe('server-side GraphQL errors count as failures', () => {
  it('are the codes platform maps to a 5xx', () => {
    expect(serverCodes).toEqual(['INTERNAL_SERVER_ERROR', 'SERVICE_UNAVAILABLE', 'SUBGRAPH_UNAVAILABLE']);
  });

  const rules = parse(readRepoFile('grafana/alerts/ghostpay-rules.yaml')) as { groups: { rules: { record?: string; expr: string }[] }[] };
  const records = rules.groups.flatMap((g) => g.rules).filter((r) => r.record);
  const failureRecords = records.filter(
    (r) => r.record!.startsWith('ghostpay:slo_errors:') || r.record === 'service:http_errors:ratio_rate5m',
  );

  it.each(failureRecords.map((r) => [r.record!, r.expr]))('%s counts them next to the 5xx', (_record, expr) => {
    expect(expr).toContain('status_code=~"5.."');
    expect(graphqlErrorCodeSets(expr)).toEqual([serverCodes]);
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
    expect(errorsQuery).toContain('status_code=~\\"5..\\"');
    expect(errorsQuery).toMatch(/graphql_errors_total\{color=\\"\$color\\",service=\\"router\\"/);
    expect(graphqlErrorCodeSets(errorsQuery)).toEqual([serverCodes]);
  });

  it('are in the overview dashboard’s error rate and availability panels', () => {
    const dashboard = JSON.parse(readRepoFile('grafana/dashboards/ghostpay-overview.json')) as {
      panels: { title: string; targets?: { expr: string }[] }[];
    };
    for (const prefix of ['Error rate', 'Availability']) {
      const panel = dashboard.panels.find((p) => p.title.startsWith(prefix));
      expect(panel, prefix).toBeDefined();
      expect(graphqlErrorCodeSets(panel!.targets![0]!.expr), prefix).toEqual([serverCodes]);
    }
  });
});
