import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createLogger } from '@ghostpay/platform';
import { type Stack, startStack } from '@ghostpay/stack';
import { freePort, inCi } from '@ghostpay/test-support';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { readRepoFile, repoPath } from '../src/repo.ts';

/**
 * The dashboards and alert rules against a real Prometheus scraping the embedded stack: every
 * query must parse and every dashboard panel must show data after a short run of real traffic.
 */

const prometheusBinary = '/usr/bin/prometheus';
const available = await promisify(execFile)(prometheusBinary, ['--version'], { timeout: 10_000 }).then(
  () => true,
  () => false,
);

/** Grafana's `$__rate_interval` for a 1 s scrape is ≥ 4 scrapes; a minute keeps every sample of this short run in the window. */
const rateInterval = '1m';
const interval = '15s';

/**
 * Panels that cannot show data on a healthy short run, with the reason. Keep this list short:
 * a panel belongs here only when its data needs something this test cannot produce.
 */
const panelsWithoutDataOnAShortRun: Record<string, string> = {};

interface Target {
  expr: string;
}
interface Panel {
  type: string;
  title: string;
  targets?: Target[];
}
interface Variable {
  name: string;
  query?: string | { query: string };
  includeAll?: boolean;
}
interface Dashboard {
  uid: string;
  panels: Panel[];
  templating: { list: Variable[] };
}
interface PromResponse<T> {
  status: 'success' | 'error';
  data: T;
  error?: string;
  errorType?: string;
}
type Sample = { metric: Record<string, string>; value: [number, string] };
type QueryData = { resultType: 'vector' | 'matrix' | 'scalar' | 'string'; result: Sample[] | [number, string] };

const dashboards = readdirSync(repoPath('grafana/dashboards'))
  .filter((f) => f.endsWith('.json'))
  .map((file) => JSON.parse(readRepoFile(`grafana/dashboards/${file}`)) as Dashboard);
const rules = parse(readRepoFile('grafana/alerts/ghostpay-rules.yaml')) as {
  groups: { name: string; rules: { expr: string; record?: string; alert?: string }[] }[];
};

describe.skipIf(!available && !inCi())('dashboards and alerts on a real Prometheus scraping the stack', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ghostpay-prometheus-'));
  let stack: Stack;
  let prometheus: ChildProcess | undefined;
  let prometheusUrl = '';
  let prometheusLog = '';
  let traffic: Traffic;

  async function api<T>(path: string, params: Record<string, string | string[]> = {}): Promise<PromResponse<T>> {
    const url = new URL(`/api/v1/${path}`, prometheusUrl);
    for (const [name, value] of Object.entries(params)) for (const v of [value].flat()) url.searchParams.append(name, v);
    const response = await fetch(url, { signal: AbortSignal.timeout(10_000) });
    return (await response.json()) as PromResponse<T>;
  }

  async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs: number) {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (await check().catch(() => false)) return;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    throw new Error(`timed out waiting for ${what}\n${prometheusLog.slice(-2000)}`);
  }

  beforeAll(async () => {
    if (!available) throw new Error(`${prometheusBinary} is missing: apt-get install -y prometheus`);
    stack = await startStack({
      dataDir: join(dir, 'stack'),
      randomPorts: true,
      logger: createLogger({ service: 'prometheus-test', level: 'silent' }),
      env: {
        ...process.env,
        DATABASE_URL: undefined,
        REDIS_URL: undefined,
        MONGODB_URL: undefined,
        SECRETS_DIR: undefined,
        // The router's analytics subgraph URL points at a closed port: a stopped subgraph, so the
        // breaker opens and fetch failures are counted (the stack cannot stop one service alone).
        // The analytics service itself still runs and ingests the router's request events.
        ROUTER_SUBGRAPH_URLS: `analytics=http://127.0.0.1:${await freePort()}/graphql`,
        // A query is retried once on a refused connection: two failures per request, open on the second request.
        ROUTER_BREAKER_FAILURES: '4',
        ROUTER_BREAKER_OPEN_MS: '60000',
      },
    });

    // One job per service, with the `service` label the ServiceMonitors set (so `up` carries it)
    // and the metrics' own labels honoured, as in the chart.
    const services = {
      router: stack.urls.router,
      auth: stack.urls.auth,
      cards: stack.urls.cards,
      charges: stack.urls.charges,
      analytics: stack.urls.analytics,
      'openapi-bridge': stack.urls.bridge,
    };
    const config = {
      global: { scrape_interval: '1s', evaluation_interval: '1s', scrape_timeout: '900ms' },
      rule_files: [repoPath('grafana/alerts/ghostpay-rules.yaml')],
      scrape_configs: Object.entries(services).map(([service, url]) => ({
        job_name: service,
        honor_labels: true,
        metrics_path: '/metrics',
        static_configs: [{ targets: [new URL(url).host], labels: { service } }],
      })),
    };
    writeFileSync(join(dir, 'prometheus.yml'), JSON.stringify(config, null, 2));
    const port = await freePort();
    prometheusUrl = `http://127.0.0.1:${port}`;
    prometheus = spawn(
      prometheusBinary,
      [
        `--config.file=${join(dir, 'prometheus.yml')}`,
        `--storage.tsdb.path=${join(dir, 'data')}`,
        `--web.listen-address=127.0.0.1:${port}`,
        '--storage.tsdb.retention.time=1h',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const collect = (chunk: Buffer) => {
      prometheusLog = (prometheusLog + chunk.toString('utf8')).slice(-20_000);
    };
    prometheus.stdout?.on('data', collect);
    prometheus.stderr?.on('data', collect);

    await waitFor('Prometheus to be ready', async () => (await fetch(`${prometheusUrl}/-/ready`)).ok, 30_000);
    await waitFor(
      'every target up',
      async () => {
        const { data } = await api<{ activeTargets: { health: string }[] }>('targets', { state: 'active' });
        return data.activeTargets.length === Object.keys(services).length && data.activeTargets.every((t) => t.health === 'up');
      },
      30_000,
    );

    traffic = await driveTraffic(stack);
    // Three scrapes after the last request, so every counter has moved between two samples.
    await new Promise((resolve) => setTimeout(resolve, 3_500));
  }, 150_000);

  afterAll(async () => {
    if (prometheus && prometheus.exitCode === null) {
      const exited = new Promise((resolve) => prometheus?.once('exit', resolve));
      prometheus.kill('SIGTERM');
      const timer = setTimeout(() => prometheus?.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    }
    await stack?.close();
    rmSync(dir, { recursive: true, force: true });
  }, 30_000);

  async function query(expr: string) {
    return api<QueryData>('query', { query: expr });
  }
  const hasData = (data: QueryData) =>
    Array.isArray(data.result) &&
    (data.result as Sample[]).some(
      (s) => Array.isArray(s.value) && !Number.isNaN(Number(s.value[1])) && Number.isFinite(Number(s.value[1])),
    );

  /** Values a `label_values(metric, label)` variable offers, from the Prometheus it runs against. */
  async function variableValues(variable: Variable): Promise<string[]> {
    const text = typeof variable.query === 'string' ? variable.query : (variable.query?.query ?? '');
    const match = /^label_values\((\w+),\s*(\w+)\)$/.exec(text.trim());
    if (!match) throw new Error(`unsupported variable query ${text}`);
    const { data } = await api<string[]>(`label/${match[2]}/values`, { 'match[]': match[1] as string });
    return data;
  }

  /** Each combination of the dashboard's variables, as Grafana would render the queries. */
  async function renderings(dashboard: Dashboard): Promise<Array<{ label: string; render: (expr: string) => string }>> {
    const variables = dashboard.templating.list.filter((v) => v.name !== 'datasource');
    let combos: Array<Record<string, string>> = [{}];
    for (const variable of variables) {
      const values = await variableValues(variable);
      expect(values.length, `variable ${dashboard.uid}/$${variable.name} offers values`).toBeGreaterThan(0);
      // "All" is a regex alternation; single values are tried one by one.
      const options = variable.includeAll ? [`(${values.join('|')})`] : values;
      combos = combos.flatMap((combo) => options.map((value) => ({ ...combo, [variable.name]: value })));
    }
    return combos.map((combo) => ({
      label: Object.entries(combo)
        .map(([k, v]) => `${k}=${v}`)
        .join(' '),
      render: (expr: string) =>
        expr
          .replaceAll('$__rate_interval', rateInterval)
          .replaceAll('$__interval', interval)
          .replace(/\$\{?(\w+)\}?/g, (whole, name: string) => combo[name] ?? whole),
    }));
  }

  it('loads the alert rule file: every group evaluates without errors', async () => {
    const { data } = await api<{ groups: { name: string; rules: { name: string; health: string; lastError?: string }[] }[] }>('rules');
    expect(data.groups.map((g) => g.name).sort()).toEqual(rules.groups.map((g) => g.name).sort());
    const unhealthy = data.groups.flatMap((g) =>
      g.rules.filter((r) => r.health !== 'ok').map((r) => `${g.name}/${r.name}: ${r.health} ${r.lastError ?? ''}`),
    );
    expect(unhealthy).toEqual([]);
  });

  it('parses every alert and recording expression through the query API', async () => {
    const failures: string[] = [];
    for (const rule of rules.groups.flatMap((g) => g.rules)) {
      const result = await query(rule.expr);
      if (result.status !== 'success') failures.push(`${rule.alert ?? rule.record}: ${result.errorType} ${result.error}`);
    }
    expect(failures).toEqual([]);
  });

  it('records the SLO and per-service recording rules from the scraped traffic', async () => {
    for (const record of ['ghostpay:slo_requests:rate5m', 'ghostpay:slo_errors:ratio_rate5m', 'service:http_requests:rate5m']) {
      await waitFor(`${record} to have a value`, async () => hasData((await query(record)).data), 10_000);
    }
  });

  it('answers every dashboard panel with data', async () => {
    const parseErrors: string[] = [];
    const empty: string[] = [];
    for (const dashboard of dashboards) {
      for (const { label, render } of await renderings(dashboard)) {
        for (const panel of dashboard.panels.filter((p) => p.type !== 'row')) {
          let withData = false;
          for (const target of panel.targets ?? []) {
            const result = await query(render(target.expr));
            if (result.status !== 'success') parseErrors.push(`${dashboard.uid} / ${panel.title}: ${result.error}`);
            else if (hasData(result.data)) withData = true;
          }
          if (!withData && !(panel.title in panelsWithoutDataOnAShortRun)) empty.push(`${dashboard.uid} / ${panel.title} [${label}]`);
        }
      }
    }
    expect(parseErrors).toEqual([]);
    expect(empty).toEqual([]);
  });

  it('counts each response the stopped subgraph failed below 500 once, as the SLI reads it from the router', async () => {
    // The metric the availability SLI, GhostPayHighErrorRate and check_color divide by requests.
    const failed = await query('router_graphql_server_error_responses_total{service="router"}');
    expect((failed.data.result as Sample[]).map((s) => s.value[1])).toEqual([String(traffic.serverErrorResponses)]);
    expect(traffic.serverErrorResponses).toBeGreaterThan(0);
    const ratio = await query('ghostpay:slo_errors:ratio_rate5m');
    expect(Number((ratio.data.result as Sample[])[0]?.value[1])).toBeGreaterThan(0);
  });

  it('shows the stopped subgraph’s breaker open and its fetches failing', async () => {
    const breaker = await query('max by (subgraph) (circuit_breaker_state{subgraph="analytics"})');
    expect((breaker.data.result as Sample[])[0]?.value[1]).toBe('2');
    const alert = await query('max by (subgraph) (circuit_breaker_state) == 2');
    expect((alert.data.result as Sample[]).map((s) => s.metric.subgraph)).toEqual(['analytics']);
  });
});

interface Traffic {
  /** GraphQL responses below 500 that carried a server-side error code (the stopped subgraph's). */
  serverErrorResponses: number;
}

/**
 * A short, real workload through both edges: REST token exchange, cards and charges (one
 * declined), GraphQL across subgraphs, a GraphQL error, calls to the stopped subgraph, and
 * more than 100 requests on one API key so the rate limiter answers 429.
 */
async function driveTraffic(stack: Stack): Promise<Traffic> {
  const rest = async (method: string, path: string, body?: unknown, token?: string, idempotencyKey?: string) => {
    const response = await fetch(`${stack.urls.bridge}${path}`, {
      method,
      headers: {
        'content-type': 'application/json',
        ...(token ? { authorization: `Bearer ${token}` } : {}),
        ...(idempotencyKey ? { 'idempotency-key': idempotencyKey } : {}),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  };
  const graphql = async (query: string, variables: Record<string, unknown>, token?: string) => {
    const response = await fetch(stack.urls.graphql, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify({ query, variables }),
    });
    return { status: response.status, body: (await response.json()) as { data?: Record<string, unknown>; errors?: unknown[] } };
  };

  const merchant = await rest('POST', '/auth/token', { api_key: stack.credentials.merchant.apiKey });
  expect(merchant.status).toBe(200);
  const token = String(merchant.body.access_token);
  const admin = await graphql('mutation ($key: String!) { createToken(apiKey: $key) { accessToken } }', {
    key: stack.credentials.admin.apiKey,
  });
  const adminToken = (admin.body.data?.createToken as { accessToken?: string } | undefined)?.accessToken;
  expect(adminToken).toEqual(expect.any(String));
  const now = new Date();
  const range = { from: new Date(now.getTime() - 3_600_000).toISOString(), to: now.toISOString() };
  let serverErrorResponses = 0;
  const serverCodes = new Set(['SUBGRAPH_UNAVAILABLE', 'SERVICE_UNAVAILABLE', 'INTERNAL_SERVER_ERROR']);
  const analyticsQuery = async () => {
    const response = await graphql(
      'query ($from: DateTime!, $to: DateTime!) { errorRate(from: $from, to: $to) { requests } }',
      range,
      adminToken,
    );
    const codes = (response.body.errors ?? []).map((e) => (e as { extensions?: { code?: string } }).extensions?.code);
    if (response.status < 500 && codes.some((code) => code !== undefined && serverCodes.has(code))) serverErrorResponses++;
    return response;
  };

  // Warm-up: one call per subgraph, then a scrape. A series first scraped with its final value
  // has a rate of 0; created here, the traffic below makes every counter grow between scrapes.
  const warmCard = await rest('POST', '/cards', { user_id: stack.credentials.user.userId, amount: 100, currency: 'USD' }, token);
  await rest('POST', '/charges', { card_id: warmCard.body.card_id, amount: 100, currency: 'USD' }, token, 'prom-warm-up');
  expect((await analyticsQuery()).body.errors?.length).toBeGreaterThan(0);
  await new Promise((resolve) => setTimeout(resolve, 2_500));

  let cardId = '';
  for (let i = 0; i < 3; i++) {
    const card = await rest('POST', '/cards', { user_id: stack.credentials.user.userId, amount: 5000, currency: 'USD' }, token);
    expect(card.status).toBe(201);
    const charge = await rest('POST', '/charges', { card_id: card.body.card_id, amount: 4200, currency: 'USD' }, token, `prom-${i}-a`);
    expect(charge.status).toBe(201);
    const declined = await rest('POST', '/charges', { card_id: card.body.card_id, amount: 100, currency: 'USD' }, token, `prom-${i}-b`);
    expect(declined.body).toMatchObject({ status: 'declined' });
    expect((await rest('GET', `/cards/${card.body.card_id}`, undefined, token)).status).toBe(200);
    cardId = String(card.body.card_id);
  }

  // GraphQL: a cross-subgraph read, and an error (an unknown card).
  const read = await graphql('query ($id: ID!) { card(id: $id) { status owner { id } charges { status } } }', { id: cardId }, token);
  expect(read.body.errors).toBeUndefined();
  const notFound = await graphql('query ($id: ID!) { card(id: $id) { id } }', { id: 'card_doesnotexist' }, token);
  expect(notFound.body.errors?.length).toBeGreaterThan(0);

  // The stopped analytics subgraph: fetches fail until the breaker opens (ROUTER_BREAKER_FAILURES=4, a
  // query is retried once, the warm-up made two), then they are rejected without a call.
  for (let i = 0; i < 3; i++) expect((await analyticsQuery()).body.errors?.length).toBeGreaterThan(0);

  // More than the default 100 requests a minute on the merchant's key: the rest are 429s.
  let limited = 0;
  for (let i = 0; i < 110; i++) {
    const response = await graphql('query { me { id } }', {}, token);
    if (response.status === 429) limited++;
  }
  expect(limited).toBeGreaterThan(0);
  return { serverErrorResponses };
}
