import { readdirSync } from 'node:fs';
import vm from 'node:vm';
import { compileSpecSchema, createSpecAjv, loadSpec, matchRoute, resolveRef, routesOf } from '@ghostpay/openapi-bridge';
import { apiSchemaFromSupergraph } from '@ghostpay/router';
import { build, type Plugin } from 'esbuild';
import { getVariableValues, type OperationDefinitionNode, parse, validate } from 'graphql';
import { describe, expect, it } from 'vitest';
import { readRepoFile, repoPath } from '../src/repo.ts';

const k6Dir = repoPath('k6');
const scripts = readdirSync(k6Dir).filter((f) => f.endsWith('.js'));

/**
 * Replaces the k6 modules (which exist only inside the k6 binary) by stand-ins, so init code,
 * setup() and the default function can run: `check` evaluates every check and metrics count
 * what is added to them (both recorded by the harness, as k6 records them for the thresholds),
 * `fail` throws as k6's does, and http requests go to the `__k6` object the harness puts in the
 * script's context.
 */
const k6Stubs: Plugin = {
  name: 'k6-stubs',
  setup(b) {
    b.onResolve({ filter: /^k6(\/.*)?$/ }, (args) => ({ path: args.path, namespace: 'k6' }));
    b.onLoad({ filter: /.*/, namespace: 'k6' }, () => ({
      contents: `const noop = () => {};
        class Metric { constructor(name) { this.name = name; } add(value = 1) { globalThis.__k6.metric(this.name, value); } }
        export const check = (value, checks) => {
          let all = true;
          for (const [name, f] of Object.entries(checks)) {
            const ok = Boolean(f(value));
            globalThis.__k6.check(name, ok);
            all &&= ok;
          }
          return all;
        };
        export const fail = (message) => { throw new Error(message); };
        export const sleep = (seconds) => globalThis.__k6.sleep(seconds), group = (_name, fn) => fn();
        export const Rate = Metric, Counter = Metric, Trend = Metric, Gauge = Metric;
        const request = (method) => (url, body, params) => globalThis.__k6.request(method, url, body, params);
        export default {
          expectedStatuses: () => ({}), setResponseCallback: noop,
          get: (url, params) => globalThis.__k6.request('GET', url, null, params),
          post: request('POST'), put: request('PUT'), patch: request('PATCH'), del: request('DELETE'),
        };`,
      loader: 'js',
    }));
  },
};

async function bundle(file: string, plugins: Plugin[] = []) {
  return build({
    entryPoints: [`${k6Dir}/${file}`],
    bundle: true,
    write: false,
    format: plugins.length ? 'cjs' : 'esm',
    platform: 'neutral',
    target: 'es2020',
    external: plugins.length ? [] : ['k6', 'k6/*'],
    metafile: true,
    logLevel: 'silent',
    plugins,
  });
}

interface Stage {
  target: number;
  duration: string;
}
interface K6Exports {
  options: {
    scenarios: Record<string, { stages: Stage[] }>;
    thresholds: Record<string, string[]>;
  };
  setup?: () => unknown;
  default: (data: unknown) => void;
}
/** A request a script sent through the k6/http stand-in. */
interface Sent {
  method: string;
  url: string;
  body: unknown;
  tags: Record<string, string>;
  headers: Record<string, string>;
  /** What the stand-in answered. */
  status: number;
  /** The fields the script read from the answer (`res.json('field')`). */
  reads: string[];
}
/** What the k6/http stand-in answers a request with. */
type Reply = (request: Sent) => { status: number; body: Record<string, unknown>; headers?: Record<string, string> };

interface Run {
  exports: K6Exports;
  sent: Sent[];
  /** Every check the script evaluated, in order, and whether it held. */
  checks: { name: string; ok: boolean }[];
  /** What the script added to each custom metric (Counter, Rate, …), by metric name. */
  metrics: Record<string, number>;
  /** The script's clock (Date.now()), in ms. */
  clock: { now: number };
  /** Sets k6's __VU and __ITER for the next call of the default function. */
  iteration(vu: number, iter: number): void;
}

/**
 * Runs a script's init stage (module scope) as k6 would, with the given __ENV, and returns its
 * exports with the harness around them: requests are answered by `reply` and recorded, and
 * Date.now() reads `clock.now`. `onEnvRead` hears every __ENV name the script reads.
 */
async function runScript(
  file: string,
  env: Record<string, string>,
  { reply = () => ({ status: 200, body: {} }), onEnvRead }: { reply?: Reply; onEnvRead?: (name: string) => void } = {},
): Promise<Run> {
  const result = await bundle(file, [k6Stubs]);
  const module = { exports: {} as Record<string, unknown> };
  const sent: Sent[] = [];
  const checks: Run['checks'] = [];
  const metrics: Run['metrics'] = {};
  const clock = { now: Date.UTC(2026, 0, 1) };
  class ScriptDate extends Date {
    static override now() {
      return clock.now;
    }
  }
  const request = (
    method: string,
    url: string,
    body: unknown,
    params?: { tags?: Record<string, string>; headers?: Record<string, string> },
  ) => {
    const req: Sent = {
      method,
      url,
      body: typeof body === 'string' ? JSON.parse(body) : body,
      tags: { ...params?.tags },
      headers: { ...params?.headers },
      status: 0,
      reads: [],
    };
    sent.push(req);
    const { status, body: answer, headers = {} } = reply(req);
    req.status = status;
    const json = (selector?: string) => {
      if (selector) req.reads.push(selector);
      return selector ? answer[selector] : answer;
    };
    return { status, body: JSON.stringify(answer), headers, json };
  };
  const __ENV = onEnvRead
    ? new Proxy(env, {
        get(target, name) {
          if (typeof name === 'string') onEnvRead(name);
          return Reflect.get(target, name);
        },
      })
    : env;
  const context = {
    module,
    exports: module.exports,
    __ENV,
    __VU: 1,
    __ITER: 0,
    // k6's sleep() moves the script's clock.
    __k6: {
      request,
      sleep: (seconds: number) => {
        clock.now += seconds * 1000;
      },
      check: (name: string, ok: boolean) => checks.push({ name, ok }),
      metric: (name: string, value: number) => {
        metrics[name] = (metrics[name] ?? 0) + value;
      },
    },
    crypto: globalThis.crypto,
    Date: ScriptDate,
  };
  vm.runInNewContext(result.outputFiles[0]!.text, context);
  return {
    exports: module.exports as unknown as K6Exports,
    sent,
    checks,
    metrics,
    clock,
    iteration(vu, iter) {
      context.__VU = vu;
      context.__ITER = iter;
    },
  };
}

async function initStage(file: string, env: Record<string, string>): Promise<Record<string, unknown>> {
  return (await runScript(file, env)).exports as unknown as Record<string, unknown>;
}

/** Seconds in a k6 duration ("30s", "5m", "1h30m", "500ms"). */
function seconds(duration: string): number {
  expect(duration).toMatch(/^(?:\d+(?:\.\d+)?(?:ms|h|m|s))+$/);
  const perUnit: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600 };
  let total = 0;
  for (const [, n, unit] of duration.matchAll(/(\d+(?:\.\d+)?)(ms|h|m|s)/g)) total += Number(n) * perUnit[unit!]!;
  return total;
}

/** The stages of a script's one scenario. */
function stagesOf({ options }: K6Exports): Stage[] {
  const scenarios = Object.values(options.scenarios);
  expect(scenarios).toHaveLength(1);
  return scenarios[0]!.stages;
}

const runSeconds = (stages: Stage[]) => stages.reduce((sum, stage) => sum + seconds(stage.duration), 0);

/** The auth service's token exchange: one token per API key, living `expiresIn` seconds. */
const tokenExchange =
  (expiresIn: number): Reply =>
  ({ url, body }) =>
    url.endsWith('/auth/token')
      ? { status: 200, body: { access_token: `tok_${(body as { api_key: string }).api_key}`, expires_in: expiresIn } }
      : { status: 200, body: {} };

const fullEnv = {
  BASE_URL: 'https://bridge.example',
  ROUTER_URL: 'https://api.example/graphql',
  API_KEY: 'gp_test_key',
  API_KEYS: 'gp_a,gp_b',
  USER_ID: 'usr_1',
};

describe('k6 scripts', () => {
  it('has smoke, load, spike and rate-limit scripts', () => {
    expect(scripts.sort()).toEqual(['load.js', 'rate-limit.js', 'smoke.js', 'spike.js']);
  });

  it.each(scripts)('%s parses and bundles with its local imports, exporting options and a default function', async (file) => {
    const result = await bundle(file);
    expect(result.errors).toEqual([]);
    const output = Object.values(result.metafile.outputs)[0]!;
    expect(output.exports).toEqual(expect.arrayContaining(['default', 'options']));
  });

  it.each(scripts)('%s fails loudly at init when BASE_URL is unset', async (file) => {
    const { BASE_URL: _, ...withoutBase } = fullEnv;
    await expect(initStage(file, withoutBase)).rejects.toThrow(/BASE_URL is not set/);
  });

  it('holds the load test to p95 < 100 ms and < 1% errors', async () => {
    const { options } = (await initStage('load.js', fullEnv)) as { options: { thresholds: Record<string, string[]> } };
    expect(options.thresholds.http_req_duration).toEqual(['p(95)<100']);
    expect(options.thresholds.http_req_failed).toEqual(['rate<0.01']);
  });

  it('expects the 429 right after 100 requests in the rate-limit test', async () => {
    await initStage('rate-limit.js', fullEnv);
    expect(readRepoFile('k6/rate-limit.js')).toContain("intEnv('LIMIT', 100)");
    await expect(initStage('rate-limit.js', { ...fullEnv, LIMIT: 'many' })).rejects.toThrow(/LIMIT must be a positive integer/);

    /** The script's run against a router that serves `served` requests, then answers 429 (with `headers`). */
    const against = async (
      served: number,
      headers: Record<string, string> = { 'Retry-After': '30', Ratelimit: 'limit=100, remaining=0' },
    ) => {
      let graphqlRequests = 0;
      const run = await runScript(
        'rate-limit.js',
        { ...fullEnv, EXTRA: '5' },
        {
          reply: (request) =>
            request.url !== fullEnv.ROUTER_URL
              ? tokenExchange(900)(request)
              : ++graphqlRequests <= served
                ? { status: 200, body: { data: { __typename: 'Query' } } }
                : { status: 429, body: { errors: [{ message: 'slow down', extensions: { code: 'RATE_LIMITED' } }] }, headers },
        },
      );
      run.exports.default(run.exports.setup!());
      expect(graphqlRequests).toBe(105);
      // What k6's thresholds read: checks (rate==1) and the two counters (count==0).
      return { failedChecks: [...new Set(run.checks.filter((c) => !c.ok).map((c) => c.name))], metrics: run.metrics };
    };
    // The limit the router enforces: every check holds, nothing counted against it.
    expect(await against(100)).toEqual({ failedChecks: [], metrics: {} });
    // A 429 one request early or late, or never, fails the run.
    expect(await against(99)).toEqual({ failedChecks: ['first 429 is request 101'], metrics: { limited_under_limit: 1 } });
    expect(await against(101)).toEqual({ failedChecks: ['first 429 is request 101'], metrics: { served_over_limit: 1 } });
    expect(await against(1_000)).toEqual({ failedChecks: ['first 429 is request 101'], metrics: { served_over_limit: 5 } });
    // So does a 429 without Retry-After or the RateLimit fields.
    expect((await against(100, {})).failedChecks).toEqual(['429 has Retry-After', '429 has RateLimit headers']);
  });

  it.each(['5m', '30s'])(
    'spike.js with HOLD=%s holds the peak for HOLD and tags requests "recovery" only after the ramp down',
    async (hold) => {
      const run = await runScript('spike.js', { ...fullEnv, HOLD: hold }, { reply: tokenExchange(900) });
      const stages = stagesOf(run.exports);
      const peak = Math.max(...stages.map((s) => s.target));
      const holdStage = stages.findIndex((s, i) => i > 0 && s.target === peak && stages[i - 1]!.target === peak);
      expect(holdStage).toBeGreaterThan(0);
      expect(stages[holdStage]!.duration).toBe(hold);
      // The recovery minute is the last stage, back down from the peak; it starts when the stages before it
      // (the trickle, the ramp up, the hold and the ramp down) are over.
      const recovery = stages.at(-1)!;
      expect(recovery.target).toBeLessThan(peak);
      expect(seconds(recovery.duration)).toBe(60);
      const holdEnds = runSeconds(stages.slice(0, holdStage + 1));
      const recoveryStarts = runSeconds(stages.slice(0, -1));
      expect(recoveryStarts).toBeGreaterThanOrEqual(holdEnds);
      expect(run.exports.options.thresholds['http_req_duration{phase:recovery}']).toEqual(['p(95)<100']);

      const started = run.clock.now;
      const data = run.exports.setup!();
      /** The phase tag of the requests the default function sends at `elapsed` seconds into the run. */
      const phaseAt = (elapsed: number) => {
        run.clock.now = started + elapsed * 1000;
        const phases = new Set<string>();
        for (const iter of [0, 1]) {
          run.sent.length = 0;
          run.iteration(1, iter);
          run.exports.default(data);
          expect(run.sent).toHaveLength(1);
          phases.add(run.sent[0]!.tags.phase!);
        }
        expect(phases.size).toBe(1);
        return [...phases][0];
      };
      expect(phaseAt(1)).toBe('spike');
      expect(phaseAt(holdEnds - 1)).toBe('spike');
      expect(phaseAt(recoveryStarts - 1)).toBe('spike');
      expect(phaseAt(recoveryStarts + 1)).toBe('recovery');
      expect(phaseAt(runSeconds(stages) - 1)).toBe('recovery');
    },
  );

  describe.each(['load.js', 'spike.js'])('%s setup()', (file) => {
    it('stops the run before any load when it outlasts the tokens (HOLD=20m, expires_in 900)', async () => {
      const run = await runScript(file, { ...fullEnv, HOLD: '20m' }, { reply: tokenExchange(900) });
      const lasts = runSeconds(stagesOf(run.exports));
      expect(lasts).toBeGreaterThan(900);
      expect(() => run.exports.setup!()).toThrow(/expire/);
      expect(() => run.exports.setup!()).toThrow(`tokens expire after 900 s but this run lasts ${lasts} s`);
      expect(run.sent.every((r) => r.url === `${fullEnv.BASE_URL}/auth/token`)).toBe(true);
    });

    it('exchanges each key once when the tokens outlive the run (HOLD=1m, expires_in 900)', async () => {
      const run = await runScript(file, { ...fullEnv, HOLD: '1m' }, { reply: tokenExchange(900) });
      expect(runSeconds(stagesOf(run.exports))).toBeLessThan(900);
      expect(run.exports.setup!()).toMatchObject({ tokens: ['tok_gp_a', 'tok_gp_b'] });
      expect(run.sent.map((r) => [r.url, r.body])).toEqual([
        [`${fullEnv.BASE_URL}/auth/token`, { api_key: 'gp_a' }],
        [`${fullEnv.BASE_URL}/auth/token`, { api_key: 'gp_b' }],
      ]);
    });
  });

  describe.each(['load.js', 'spike.js'])('%s setup() with more keys than the anonymous limit', (file) => {
    const keys = Array.from({ length: 150 }, (_, i) => `gp_${i}`);
    /** The router's anonymous limit on the token exchange: 100 a minute from one address, then 429 with Retry-After. */
    const limitedExchange = (expiresIn: number): Reply => {
      const served: number[] = [];
      return (request) => {
        const now = run.clock.now;
        while (served.length && served[0]! <= now - 60_000) served.shift();
        if (served.length >= 100)
          return { status: 429, body: {}, headers: { 'Retry-After': String(Math.ceil((served[0]! + 60_000 - now) / 1000)) } };
        served.push(now);
        return tokenExchange(expiresIn)(request);
      };
    };
    let run: Run;

    it('waits out the 429s and exchanges every key, within its setupTimeout', async () => {
      let reply: Reply = () => ({ status: 500, body: {} });
      run = await runScript(file, { ...fullEnv, API_KEYS: keys.join(','), HOLD: '1m' }, { reply: (r) => reply(r) });
      reply = limitedExchange(900);
      const started = run.clock.now;
      const data = run.exports.setup!() as { tokens: string[] };
      expect(data.tokens).toEqual(keys.map((k) => `tok_${k}`));
      const waited = (run.clock.now - started) / 1000;
      expect(waited).toBeGreaterThanOrEqual(55);
      const { setupTimeout } = run.exports.options as { setupTimeout?: string };
      expect(seconds(setupTimeout ?? '60s')).toBeGreaterThan(waited);
    });

    it("counts the wait in the tokens' lifetime: the first token must outlive setup() and the run", async () => {
      let reply: Reply = () => ({ status: 500, body: {} });
      run = await runScript(file, { ...fullEnv, API_KEYS: keys.join(','), HOLD: '1m' }, { reply: (r) => reply(r) });
      const lasts = runSeconds(stagesOf(run.exports));
      // Long enough for the run alone, not for the run and the minute setup() waited.
      reply = limitedExchange(lasts + 30);
      expect(() => run.exports.setup!()).toThrow(/tokens expire after \d+ s but this run lasts \d+ s/);
    });
  });

  it('documents every env variable the scripts read in k6/README.md', async () => {
    const readme = readRepoFile('k6/README.md');
    // Every helper lib/env.js exports that reads a variable by name (requireEnv, intEnv, durationEnv, ...).
    const helpers = [...readRepoFile('k6/lib/env.js').matchAll(/export function (\w+)\(name\b/g)].map((m) => m[1]!);
    expect(helpers).toEqual(expect.arrayContaining(['requireEnv', 'optionalEnv', 'intEnv', 'urlEnv', 'durationEnv']));
    const call = new RegExp(`\\b(?:${helpers.join('|')})\\('([A-Z_]+)'`, 'g');
    const used = new Set<string>();
    for (const file of [...scripts, 'lib/env.js', 'lib/ghostpay.js']) {
      for (const m of readRepoFile(`k6/${file}`).matchAll(call)) used.add(m[1]!);
    }
    // The scan must see every variable the scripts' init stages actually read from __ENV.
    const read = new Set<string>();
    for (const file of scripts) await runScript(file, fullEnv, { onEnvRead: (name) => read.add(name) });
    expect([...read].filter((name) => !used.has(name))).toEqual([]);
    expect([...used].filter((name) => !readme.includes(`\`${name}\``))).toEqual([]);
  });
});

/**
 * The scripts against the API they load: every request each script sends (setup and a few
 * iterations of its default function, run by the harness) is checked against the contracts
 * in the repository, read-only. GraphQL documents and their variables against the API schema
 * of `supergraph.graphql`; REST requests against `openapi-bridge/openapi.yaml` (the operation
 * exists, required headers are sent, the body is valid), and every field a script reads from
 * an answer is one that answer documents.
 */
describe('k6 scripts against the API', () => {
  const apiSchema = apiSchemaFromSupergraph(readRepoFile('supergraph.graphql'));
  // The contract as the bridge itself reads it: its routes (path matching, parameters with their
  // `$ref`s followed, whether a bearer token is required) and its request body schemas.
  const openapi = loadSpec();
  const routes = routesOf(openapi);
  const ajv = createSpecAjv(openapi);
  const bodyChecks = new Map(
    routes.flatMap((route) => (route.bodySchema === undefined ? [] : [[route, compileSpecSchema(ajv, route.bodySchema)] as const])),
  );

  /** Answers as the bridge and the router do, with the documented statuses. */
  const card = { card_id: 'card_1', status: 'active' };
  const api: Reply = ({ method, url }) => {
    if (url === fullEnv.ROUTER_URL) return { status: 200, body: { data: {} } };
    const path = new URL(url).pathname;
    if (path === '/auth/token') return { status: 200, body: { access_token: 'tok', token_type: 'Bearer', expires_in: 900, scope: '' } };
    if (method === 'POST' && path === '/cards') return { status: 201, body: card };
    if (method === 'POST' && path === '/charges') return { status: 201, body: { charge_id: 'ch_1', status: 'authorized' } };
    return { status: 200, body: card };
  };

  /** Every request a script sends in setup() and four iterations. */
  async function requestsOf(file: string) {
    const run = await runScript(file, { ...fullEnv, HOLD: '1m', ITERATIONS: '1', LIMIT: '3', EXTRA: '1' }, { reply: api });
    const data = run.exports.setup?.();
    for (const iter of [0, 1, 2, 3]) {
      run.iteration(1, iter);
      run.exports.default(data);
    }
    return run.sent;
  }

  it.each(scripts)('%s sends GraphQL documents and variables the API schema accepts', async (file) => {
    const graphqlRequests = (await requestsOf(file)).filter((r) => r.url === fullEnv.ROUTER_URL);
    expect(graphqlRequests.length, 'the script sends GraphQL through ROUTER_URL').toBeGreaterThan(0);
    for (const { body } of graphqlRequests) {
      const { query, variables = {} } = body as { query: string; variables?: Record<string, unknown> };
      const document = parse(query);
      expect(
        validate(apiSchema, document).map((e) => e.message),
        query,
      ).toEqual([]);
      const operation = document.definitions.find((d): d is OperationDefinitionNode => d.kind === 'OperationDefinition');
      expect(operation?.name, `${query}: named (the dashboards' Top operations)`).toBeDefined();
      const coerced = getVariableValues(apiSchema, operation?.variableDefinitions ?? [], variables);
      expect(coerced.errors?.map((e) => e.message) ?? [], query).toEqual([]);
    }
  });

  it.each(scripts)('%s calls documented REST operations with their required headers and valid bodies', async (file) => {
    const rest = (await requestsOf(file)).filter((r) => r.url.startsWith(fullEnv.BASE_URL));
    expect(rest.length).toBeGreaterThan(0);
    for (const request of rest) {
      const path = new URL(request.url).pathname;
      const label = `${request.method} ${path}`;
      const match = matchRoute(routes, request.method, path);
      const route = match.kind === 'found' ? match.route : undefined;
      expect(route, `${label} is in openapi.yaml`).toBeDefined();
      const operation = resolveRef<Record<string, unknown>>(openapi, { $ref: route!.pointer });
      const headers = new Set(Object.keys(request.headers).map((h) => h.toLowerCase()));
      for (const parameter of route!.parameters) {
        if (parameter.in === 'header' && parameter.required)
          expect(headers, `${label}: ${parameter.name}`).toContain(parameter.name.toLowerCase());
      }
      if (route!.requiresAuth) expect(request.headers.Authorization, `${label}: bearer token`).toMatch(/^Bearer \S+$/);
      if (operation.requestBody) {
        const check = bodyChecks.get(route!);
        expect(check, `${label}: body schema`).toBeDefined();
        expect(check!(request.body) ? [] : check!.errors, `${label} body ${JSON.stringify(request.body)}`).toEqual([]);
      }
      const response = resolveRef(openapi, route!.responses[String(request.status)] as Record<string, unknown> | undefined);
      expect(response, `${label} ${request.status} is documented`).toBeDefined();
      const content = response!.content as Record<string, { schema?: Record<string, unknown> }> | undefined;
      const schema = resolveRef(openapi, content?.['application/json']?.schema);
      const properties = Object.keys((schema?.properties as Record<string, unknown> | undefined) ?? {});
      for (const field of request.reads) expect(properties, `${label} ${request.status}: the script reads ${field}`).toContain(field);
    }
  });
});
