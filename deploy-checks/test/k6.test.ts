import { readdirSync } from 'node:fs';
import vm from 'node:vm';
import { build, type Plugin } from 'esbuild';
import { describe, expect, it } from 'vitest';
import { readRepoFile, repoPath } from '../src/repo.ts';

const k6Dir = repoPath('k6');
const scripts = readdirSync(k6Dir).filter((f) => f.endsWith('.js'));

/** Replaces the k6 modules (which exist only inside the k6 binary) by inert stand-ins, so init code can run. */
const k6Stubs: Plugin = {
  name: 'k6-stubs',
  setup(b) {
    b.onResolve({ filter: /^k6(\/.*)?$/ }, (args) => ({ path: args.path, namespace: 'k6' }));
    b.onLoad({ filter: /.*/, namespace: 'k6' }, () => ({
      contents: `const noop = () => {};
        class Metric { add() {} }
        export const check = noop, fail = noop, sleep = noop, group = noop;
        export const Rate = Metric, Counter = Metric, Trend = Metric, Gauge = Metric;
        export default { expectedStatuses: () => ({}), setResponseCallback: noop, get: noop, post: noop };`,
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

/** Runs a script's init stage (module scope) as k6 would, with the given __ENV. */
async function initStage(file: string, env: Record<string, string>): Promise<Record<string, unknown>> {
  const result = await bundle(file, [k6Stubs]);
  const module = { exports: {} as Record<string, unknown> };
  vm.runInNewContext(result.outputFiles[0]!.text, { module, exports: module.exports, __ENV: env, crypto: globalThis.crypto });
  return module.exports;
}

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
  });

  it('documents every env variable the scripts read in k6/README.md', () => {
    const readme = readRepoFile('k6/README.md');
    const used = new Set<string>();
    for (const file of [...scripts, 'lib/env.js', 'lib/ghostpay.js']) {
      for (const m of readRepoFile(`k6/${file}`).matchAll(/(?:requireEnv|optionalEnv|intEnv|urlEnv)\('([A-Z_]+)'/g)) used.add(m[1]!);
    }
    expect([...used].filter((name) => !readme.includes(`\`${name}\``))).toEqual([]);
  });
});
