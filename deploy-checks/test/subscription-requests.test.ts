/**
 * The router's subscriptions in http_request_duration_seconds: each SSE request
 * (route="/graphql/stream") and each WebSocket subscribe attempt (route="/graphql/ws", the
 * router's `webSocketSubscribeRoute`) is one request. Every query that counts requests (the
 * availability SLI, the per-service failure ratio, the traffic and status panels) must keep them,
 * and every latency query that can see the router must leave them out: a stream's duration is its
 * lifetime, and a subscribe's first answer is no request/response round trip of the p95 SLO. The
 * promtool cases in grafana/alerts/tests/websocket-subscribes.test.yaml show the rules count them
 * in the SLI and not in GhostPayHighLatencyP95; router/test/subscriptions-sli.test.ts shows the
 * router counts them.
 */
import { webSocketSubscribeRoute } from '@ghostpay/router';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { readRepoFile } from '../src/repo.ts';

const subscriptionRoutes = ['/graphql/stream', webSocketSubscribeRoute];

interface Query {
  where: string;
  expr: string;
}

/**
 * Each expression of the rules and the dashboards, both copies (grafana/ and the chart's files/),
 * and the deploy workflow's checks of a new colour (`promq "…"`).
 */
function queries(): Query[] {
  const out: Query[] = [];
  for (const [, name, expr] of readRepoFile('.github/workflows/deploy.yml').matchAll(/(\w+)=\$\(promq "(.*)"\)$/gm)) {
    out.push({ where: `.github/workflows/deploy.yml: ${name}`, expr: expr!.replaceAll('\\"', '"') });
  }
  for (const file of ['grafana/alerts/ghostpay-rules.yaml', 'charts/ghostpay/files/ghostpay-rules.yaml']) {
    const rules = parse(readRepoFile(file)) as { groups: { rules: { record?: string; alert?: string; expr: string }[] }[] };
    for (const rule of rules.groups.flatMap((g) => g.rules)) out.push({ where: `${file}: ${rule.record ?? rule.alert}`, expr: rule.expr });
  }
  for (const dir of ['grafana/dashboards', 'charts/ghostpay/files/dashboards']) {
    for (const name of ['ghostpay-overview.json', 'ghostpay-subgraph.json', 'ghostpay-runtime.json']) {
      const dashboard = JSON.parse(readRepoFile(`${dir}/${name}`)) as { panels: { title: string; targets?: { expr: string }[] }[] };
      for (const panel of dashboard.panels)
        for (const target of panel.targets ?? []) out.push({ where: `${dir}/${name}: ${panel.title}`, expr: target.expr });
    }
  }
  return out;
}

/** The label matchers of each selector of `series` in an expression. */
function selectorsOf(expr: string, series: string): string[] {
  return [...expr.matchAll(new RegExp(`\\b${series}\\{([^}]*)\\}`, 'g'))].map(([, matchers]) => matchers!);
}

/** The routes a selector's `route!~"a|b|…"` matcher leaves out (none without one). */
function excludedRoutes(matchers: string): string[] {
  return /route!~"([^"]*)"/.exec(matchers)?.[1]?.split('|') ?? [];
}

/** The GhostPay / Subgraph dashboard's latency is `service="$subgraph"`, whose values are subgraphs: never the router. */
const canSeeRouter = (matchers: string) => !/service="\$subgraph"/.test(matchers);

describe('the router’s subscriptions in request queries', () => {
  const all = queries();

  it('are labelled as the rules and dashboards expect', () => {
    expect(webSocketSubscribeRoute).toBe('/graphql/ws');
    expect(readRepoFile('router/src/router.ts')).toContain("path === '/graphql/stream'");
  });

  it('are left out of every latency query that can see the router', () => {
    const latency = all.flatMap(({ where, expr }) =>
      selectorsOf(expr, 'http_request_duration_seconds_bucket')
        .filter(canSeeRouter)
        .map((matchers) => ({ where, matchers })),
    );
    // The overview's p95 and p99, and the rule behind GhostPayHighLatencyP95, in both copies,
    // and the deploy workflow's p95 check of a new colour.
    expect(latency.length).toBeGreaterThanOrEqual(7);
    expect(latency.some(({ where }) => where === '.github/workflows/deploy.yml: p95')).toBe(true);
    const counted = latency.flatMap(({ where, matchers }) =>
      subscriptionRoutes.filter((route) => !excludedRoutes(matchers).includes(route)).map((route) => `${where}: ${route}`),
    );
    expect(counted).toEqual([]);
  });

  it('are counted as requests wherever requests are counted (traffic, failures, the SLI)', () => {
    const requests = all.flatMap(({ where, expr }) =>
      selectorsOf(expr, 'http_request_duration_seconds_count').map((matchers) => ({ where, matchers })),
    );
    expect(requests.length).toBeGreaterThan(10);
    const left = requests.flatMap(({ where, matchers }) => [
      ...subscriptionRoutes.filter((route) => excludedRoutes(matchers).includes(route)).map((route) => `${where}: leaves out ${route}`),
      // A positive route matcher would keep only that route.
      ...(/route=~?"/.test(matchers) ? [`${where}: selects routes (${matchers})`] : []),
    ]);
    expect(left).toEqual([]);
    // The SLI's records among them, and the deploy workflow's error share.
    expect(requests.some(({ where }) => where === '.github/workflows/deploy.yml: errors')).toBe(true);
    expect(requests.some(({ where }) => where.endsWith('ghostpay:slo_errors:ratio_rate1h'))).toBe(true);
    expect(requests.some(({ where }) => where.endsWith('service:http_errors:ratio_rate5m'))).toBe(true);
  });
});
