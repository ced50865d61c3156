import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inCi } from '@ghostpay/test-support';
import { afterAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { knownSeriesNames, metricNamesIn } from '../src/metric-names.ts';
import { hasPromtool, promtool } from '../src/promtool.ts';
import { readRepoFile, repoPath } from '../src/repo.ts';

interface Panel {
  type: string;
  title: string;
  description?: string;
  datasource?: { uid?: string };
  targets?: { expr: string; refId: string }[];
  fieldConfig?: { defaults?: { unit?: string } };
}
interface Dashboard {
  uid: string;
  title: string;
  panels: Panel[];
  templating: { list: { name: string; query?: string | { query: string } }[] };
}

const available = await hasPromtool();
const files = readdirSync(repoPath('grafana/dashboards')).filter((f) => f.endsWith('.json'));
const dashboards = files.map((file) => ({ file, dashboard: JSON.parse(readRepoFile(`grafana/dashboards/${file}`)) as Dashboard }));
const queries = dashboards.flatMap(({ file, dashboard }) =>
  dashboard.panels
    .filter((p) => p.type !== 'row')
    .flatMap((panel) => (panel.targets ?? []).map((t) => ({ file, panel: panel.title, expr: t.expr }))),
);

/** Grafana's variables replaced by values Prometheus accepts, so promtool can parse the query. */
function concrete(expr: string): string {
  return expr
    .replaceAll('$__rate_interval', '5m')
    .replaceAll('$__interval', '1m')
    .replace(/\$\{?(\w+)\}?/g, 'x');
}

describe('Grafana dashboards', () => {
  const readme = readRepoFile('grafana/README.md');
  const recordingRules = new Set([...readRepoFile('grafana/alerts/ghostpay-rules.yaml').matchAll(/record: (\S+)/g)].map((m) => m[1]!));

  it('provides overview, per-subgraph and runtime dashboards with unique uids', () => {
    const uids = dashboards.map(({ dashboard }) => dashboard.uid);
    expect(uids.sort()).toEqual(['ghostpay-overview', 'ghostpay-runtime', 'ghostpay-subgraph']);
  });

  it('plots a counter rate per second: panels whose queries are all rates of counters use a per-second unit', () => {
    // Grafana's per-second units; `short` would label "2 errors per second" as "2".
    const perSecond = new Set(['reqps', 'ops', 'cps', 'rps', 'wps', 'iops']);
    // A summed rate of a counter, not divided by anything (a ratio has its own unit), and not of a
    // `_seconds_total` counter (seconds per second is a share: percentunit).
    const counterRate = /^(?:sum(?: by \([^)]*\))? \()?rate\((?!\w+_seconds_total)\w+_(?:total|count)\b[^/]*$/;
    const wrong = dashboards.flatMap(({ file, dashboard }) =>
      dashboard.panels
        .filter((panel) => panel.type !== 'row' && (panel.targets ?? []).length > 0)
        .filter((panel) => panel.targets!.every((t) => counterRate.test(t.expr.replace(/^topk\(\d+, /, ''))))
        .filter((panel) => !perSecond.has(panel.fieldConfig?.defaults?.unit ?? ''))
        .map((panel) => `${file} / ${panel.title}: ${panel.fieldConfig?.defaults?.unit}`),
    );
    expect(wrong).toEqual([]);
  });

  it('queries only the metrics the services expose (contract + prom-client defaults + up)', async () => {
    const known = await knownSeriesNames();
    const unknown = queries.flatMap(({ file, panel, expr }) =>
      metricNamesIn(concrete(expr))
        .filter((name) => !known.has(name))
        .map((name) => `${file} / ${panel}: ${name}`),
    );
    expect(unknown).toEqual([]);
    // Recording rules are not used by dashboards: they must work on a Prometheus without our rules.
    expect(queries.filter(({ expr }) => [...recordingRules].some((r) => expr.includes(r)))).toEqual([]);
  });

  it('reads metric names out of PromQL, leaving functions, labels and keywords aside', () => {
    expect(
      metricNamesIn('sum by (service, le) (rate(foo_seconds_bucket{route!~"/a|/b", le="0.1"}[5m])) / on (x) bar_total > 0.1 and up'),
    ).toEqual(['foo_seconds_bucket', 'bar_total', 'up']);
  });

  it('alerts and recording rules use only exposed metrics and their own recording rules', async () => {
    const known = await knownSeriesNames();
    const rules = parse(readRepoFile('grafana/alerts/ghostpay-rules.yaml')) as {
      groups: { rules: { expr: string; record?: string; alert?: string }[] }[];
    };
    const unknown = rules.groups
      .flatMap((g) => g.rules)
      .flatMap((rule) =>
        metricNamesIn(rule.expr)
          .filter((name) => !known.has(name) && !recordingRules.has(name))
          .map((n) => `${rule.alert ?? rule.record}: ${n}`),
      );
    expect(unknown).toEqual([]);
  });

  it('finds every metric a panel queries in grafana/README.md under that panel', () => {
    const missing = queries.flatMap(({ panel, expr }) => {
      const line = readme.split('\n').find((l) => l.split('|')[1]?.trim() === panel);
      if (!line) return [`${panel}: not listed`];
      return metricNamesIn(concrete(expr))
        .filter((name) => !line.includes(`\`${name}\``))
        .map((name) => `${panel}: ${name}`);
    });
    expect(missing).toEqual([]);
  });

  it('points every panel and variable at the provisioned Prometheus datasource variable', () => {
    const datasource = parse(readRepoFile('grafana/provisioning/datasources/prometheus.yaml')) as {
      datasources: { uid: string; type: string }[];
    };
    expect(datasource.datasources).toEqual([expect.objectContaining({ uid: 'prometheus', type: 'prometheus' })]);
    for (const { dashboard } of dashboards) {
      expect(dashboard.templating.list.find((v) => v.name === 'datasource')).toMatchObject({ query: 'prometheus' });
      for (const panel of dashboard.panels.filter((p) => p.type !== 'row')) {
        expect(panel.datasource?.uid, panel.title).toBe(`\${datasource}`); // Grafana's variable syntax, not a template placeholder
        expect(panel.targets?.length, panel.title).toBeGreaterThan(0);
      }
    }
  });

  it('covers the panels the issue asks for', () => {
    const titles = dashboards.flatMap(({ dashboard }) => dashboard.panels.map((p) => p.title.toLowerCase())).join('\n');
    for (const topic of [
      'requests per second',
      'p95',
      'p99',
      'error rate',
      'rate-limited',
      'charges by status',
      'decline code',
      'circuit breaker',
      'cpu',
      'memory',
      'event loop',
      'connections',
    ]) {
      expect(titles, topic).toContain(topic);
    }
  });

  describe.skipIf(!available && !inCi())('with promtool', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ghostpay-dashboards-'));
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    it('parses every dashboard query as PromQL', async () => {
      if (!available) throw new Error('promtool is missing: apt-get install -y prometheus');
      // promtool has no offline "parse this query" command; as recording rules, it parses each one.
      const rules = {
        groups: [{ name: 'dashboard-queries', rules: queries.map((q, i) => ({ record: `dashboard:query_${i}`, expr: concrete(q.expr) })) }],
      };
      writeFileSync(join(dir, 'queries.json'), JSON.stringify(rules));
      const output = await promtool(['check', 'rules', 'queries.json'], dir);
      expect(output).toContain(`SUCCESS: ${queries.length} rules found`);
    });
  });
});
