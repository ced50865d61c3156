/**
 * `npm run bench`: every figure in one bounded run on loopback, on a throwaway PostgreSQL
 * cluster and redis-server. Prints one markdown table and writes it, with the machine's
 * details, into bench/RESULTS.md (between markers; the hand-written change log stays).
 *
 * Env: BENCH_SECONDS (measured seconds per run, default 10), BENCH_CONNECTIONS (concurrency of
 * the charge runs, default 16), BENCH_FED_CONNECTIONS (federation, default 32), BENCH_ONLY
 * (comma list of db,graphql,rest,reads,federation: src/plan.ts), BENCH_GATEWAYS (comma list of
 * apollo,apollo-compiled,hive,ghostpay-gateway-executor,ghostpay), BENCH_CPU_PROF=1 (steady-state V8 profiles in bench/profiles/),
 * BENCH_STACK (processes — one per service, the default — or single, like npm start), BENCH_ROUNDS (alternating
 * windows per charge maximum, default 3), BENCH_NODE_ENV (NODE_ENV of every server process, default production).
 * The full list is in bench/README.md.
 */

import { execFileSync } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { createDatabase, migrate } from '@ghostpay/db';
import { routerNodeOptions } from '@ghostpay/router';
import { createTestTokenIssuer, startPostgresCluster, startRedisServer, testAudience, testIssuer } from '@ghostpay/test-support';
import pg from 'pg';
import type { DbLimitRun } from './charges/db-limit-process.ts';
import { issueBenchCards, seedBenchAccounts } from './charges/seed-bench-data.ts';
import { type BenchChild, startChild } from './child-process.ts';
import { formatCpuSeconds, series, startCpuSampler, stealMeter } from './cpu-sampler.ts';
import { expectedTestQueryData, hashData } from './federation/expected-result.ts';
import { composeBenchSupergraph } from './federation/supergraph.ts';
import { testQuery } from './federation/test-query.ts';
import { closeLoadPools, combineWindows, type LoadResult, runLoad } from './load.ts';
import { measureLoopback } from './loopback.ts';
import { machineDetails } from './machine.ts';
import { benchPlan } from './plan.ts';
import { type Row, renderTable, writeResults } from './report.ts';
import { ioSyscalls, serverCpu } from './server-cpu.ts';

const hardLimitMs = 8 * 60_000;
const seconds = Number(process.env.BENCH_SECONDS ?? 10);
const measureMs = seconds * 1000;
const warmupMs = Math.round(Math.min(3000, measureMs / 3));
const connections = Number(process.env.BENCH_CONNECTIONS ?? 16);
/** Alternating windows per charge maximum (the DB limit, GraphQL, REST): see measureAlternating. */
const rounds = Math.max(1, Number(process.env.BENCH_ROUNDS ?? 3));
const fedConnections = Number(process.env.BENCH_FED_CONNECTIONS ?? 32);
const plan = benchPlan();
const allGateways = 'apollo,apollo-compiled,hive,ghostpay-gateway-executor,ghostpay';
const gatewayKinds = (process.env.BENCH_GATEWAYS ?? allGateways).split(',').map((s) => s.trim());
/** Only a run of every scenario and gateway rewrites RESULTS.md; a partial one prints its table. */
const fullRun = plan.full && allGateways.split(',').every((kind) => gatewayKinds.includes(kind));
type Topology = 'processes' | 'single';
/** BENCH_STACK=single runs every charge scenario on the one-process stack (like npm start) instead of a process per service. */
const stackTopology: Topology = process.env.BENCH_STACK === 'single' ? 'single' : 'processes';
const amount = 1_000;
const currency = 'USD';
const src = import.meta.dirname;
const mib = (kb: number) => kb / 1024;

const startedAt = Date.now();
const children: BenchChild[] = [];
const cleanups: Array<() => Promise<unknown>> = [];
// The whole run is bounded: past the limit everything is torn down and the run fails.
const watchdog = setTimeout(async () => {
  console.error(`bench: exceeded ${hardLimitMs / 60_000} minutes, stopping`);
  await teardown();
  process.exit(2);
}, hardLimitMs);

// An interrupted run (Ctrl-C, a job runner's SIGTERM) tears down what it started too:
// PostgreSQL, redis-server and the stack's processes would otherwise outlive it. The first
// pass stops what is running; a cluster or child still starting registers after it, so the run
// refuses to spawn anything more (`spawn`), ends, and its own `finally` tears down again.
let stopping = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, async () => {
    console.error(`bench: ${signal}, stopping`);
    stopping = true;
    await teardown();
    await Promise.race([finished, delay(30_000)]);
    await teardown();
    process.exit(signal === 'SIGINT' ? 130 : 143);
  });
}

/** The run's temporary directory (data, secrets, stacks), removed last by every teardown. */
let dataDir: string | undefined;

async function teardown() {
  await closeLoadPools().catch(() => {});
  for (const child of children.splice(0)) await child.stop().catch(() => {});
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => {});
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
}

// Node flags for every server process (gateways, stack), the same for all: the router's
// production options (its image's NODE_OPTIONS) unless BENCH_NODE_FLAGS says otherwise.
const nodeFlags = (process.env.BENCH_NODE_FLAGS ?? routerNodeOptions).split(' ').filter(Boolean);
// NODE_ENV of every server process, as the images set it: graphql-js, Apollo Server and
// @apollo/gateway run extra checks outside production (graphql-js's cross-realm instanceOf
// check on every type test, the gateway's supergraph validation), which no deployment pays.
const nodeEnv = process.env.BENCH_NODE_ENV ?? 'production';

async function spawn(name: string, script: string, env: Record<string, string>) {
  if (stopping) throw new Error('bench: stopping');
  const child = await startChild(name, resolve(src, script), { NODE_ENV: nodeEnv, ...env }, { execArgv: nodeFlags });
  children.push(child);
  return child;
}
async function stopChild(child: BenchChild) {
  children.splice(children.indexOf(child), 1);
  await child.stop();
}

const log = (message: string) => console.error(`[bench ${((Date.now() - startedAt) / 1000).toFixed(0).padStart(3)}s] ${message}`);
const ratioTo = (value: number, base: number | undefined, label: string) => (base ? `${(value / base).toFixed(2)}× ${label}` : '–');
const rowOf = (scenario: string, result: LoadResult, extra: Partial<Row> = {}): Row => {
  // A window in which the hypervisor ran other guests on our cores says so in its row.
  const steal = result.stealPct !== undefined && result.stealPct >= 1 ? `steal ${result.stealPct.toFixed(0)}%` : '';
  return {
    scenario,
    rps: result.rps,
    p50: result.p50,
    p95: result.p95,
    p99: result.p99,
    errors: result.errors,
    ...extra,
    note: [extra.note, steal].filter(Boolean).join('; '),
  };
};
/**
 * One process's share of an operation: CPU ms / read+write syscalls. PostgreSQL's backends
 * talk to clients with recv/send, which /proc/<pid>/io does not count: its CPU only.
 */
const perCharge = (name: string, cpuMs: number, syscalls?: number) =>
  `${name} ${cpuMs.toFixed(2)}${syscalls === undefined ? '' : ` / ${syscalls.toFixed(1)}`}`;
/** A stack child's name in the splits: `stack-3-router` → `router`, the one-process `stack-3` → `stack`. */
const stackProcessLabel = (childName: string) => childName.replace(/^stack-\d+-?/, '') || 'stack';
const warnErrors = (label: string, result: LoadResult) => {
  if (result.errors) log(`${label}: ${result.errors} errors, e.g. ${result.errorSamples.join(' | ')}`);
};

async function main() {
  const machine = machineDetails();
  const rows: Row[] = [];
  const notes: string[] = [];
  const runDir = mkdtempSync(join(tmpdir(), 'ghostpay-bench-'));
  dataDir = runDir;

  log('loopback: what a socket message costs here');
  const busy = await measureLoopback(1_000);
  const idle = await measureLoopback(1_000, { idle: true });
  notes.push(
    `Loopback TCP between two Node processes, one message each way: ${busy.cpuMicrosPerRoundTrip.toFixed(0)} µs of CPU (both ends) per round trip back to back, ${idle.cpuMicrosPerRoundTrip.toFixed(0)} µs when both sides sleep before each (a 1 ms pause, whose own timer is in the figure), as the charge path's processes do between charges. Every read+write syscall in the splits below is one such message end.`,
  );

  let dbLimit: number | undefined;
  if (plan.db || plan.stack) {
    log('starting PostgreSQL and redis-server');
    const cluster = await startPostgresCluster();
    cleanups.push(() => cluster.destroy());
    const redis = await startRedisServer();
    cleanups.push(() => redis.stop());
    const admin = new pg.Client({ connectionString: cluster.url });
    await admin.connect();
    await admin.query('create database ghostpay_bench');
    await admin.end();
    const url = cluster.urlFor('ghostpay_bench');
    // PostgreSQL's postmaster (whose children are the backends) and redis-server, measured from /proc.
    const postmasterPid = Number(readFileSync(join(cluster.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
    const pgCpu = serverCpu(postmasterPid);
    const redisCpu = serverCpu(redis.pid ?? 0);
    /**
     * Before each measured run: vacuum and analyze what earlier runs left (dead card versions,
     * fresh charges and cards), then checkpoint, so no run pays PostgreSQL's catch-up for the
     * runs before it (autovacuum workers are postmaster children: their CPU is in the window).
     */
    const settleDatabase = async () => {
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      try {
        await client.query('vacuum (analyze)');
        await client.query('checkpoint');
      } finally {
        await client.end();
      }
    };
    const database = await createDatabase({ url, poolSize: 4, applicationName: 'ghostpay-bench-seed' });
    cleanups.push(() => database.close());
    await migrate(database);
    const accounts = await seedBenchAccounts(database);
    /**
     * The charge ratios come from alternating windows: the DB limit, GraphQL and REST maxima
     * each run `rounds` short windows in turn (rotating which goes first), on one stack. This VM
     * is shared and its speed drifts by tens of percent within a minute (steal), so scenarios
     * measured one after the other compared the VM's moods as much as the code; alternated, a
     * slow spell lands on all of them. The first window of each scenario warms up for the whole
     * warm-up, later ones briefly (the processes stay warm in between).
     */
    const windowMs = Math.round(measureMs / rounds);
    const laterWarmupMs = Math.max(500, Math.round(warmupMs / rounds));
    // Enough fresh cards for the fastest conceivable run on this machine; each charge uses one.
    const cardsFor = (ms: number) => Math.ceil((ms / 1000) * 6000);
    const cardsPerRotation = cardsFor(measureMs + warmupMs + (rounds - 1) * laterWarmupMs);
    const cardsPerRun = cardsFor(measureMs + warmupMs);

    /** One process's CPU over a measured window (and its read+write syscalls when /proc/<pid>/io counts them). */
    interface ProcessShare {
      name: string;
      cpuMicros: number;
      syscalls?: number;
    }
    /** One measured window of a scenario. `cpuMicros` is the scenario's own processes (the driver, or the stack). */
    interface Window {
      result: LoadResult;
      cpuMicros: number;
      pgMicros: number;
      maxRssKb: number;
      processes: ProcessShare[];
    }
    interface Scenario {
      key: 'db' | 'graphql' | 'rest' | 'one-process' | 'reads';
      label: string;
      window(warmMs: number, durationMs: number): Promise<Window>;
    }
    /**
     * Runs the scenarios' windows in turn, `rounds` rounds (one window of the whole measured time
     * when there is a single scenario); round r starts with scenario r mod n, so none is always
     * first or last. Returns each scenario's windows in order.
     */
    const measureAlternating = async (scenarios: Scenario[]) => {
      const windows = new Map<Scenario['key'], Window[]>(scenarios.map((s) => [s.key, []]));
      const alone = scenarios.length === 1;
      for (let round = 0; round < (alone ? 1 : rounds); round++) {
        for (let k = 0; k < scenarios.length; k++) {
          const scenario = scenarios[(round + k) % scenarios.length] as Scenario;
          const done = windows.get(scenario.key) as Window[];
          const window = await scenario.window(done.length === 0 ? warmupMs : laterWarmupMs, alone ? measureMs : windowMs);
          done.push(window);
          if (!alone) log(`${scenario.label}, window ${done.length} of ${rounds}: ${window.result.rps.toFixed(0)}/s`);
        }
      }
      return windows;
    };
    /** A scenario's windows as one: combined load figures, and CPU per operation (a charge, or a read) by process. */
    const aggregate = (label: string, windows: Window[], operation = 'charge') => {
      const result = combineWindows(windows.map((w) => w.result));
      const ops = Math.max(1, result.ok + result.errors);
      const byName = new Map<string, ProcessShare>();
      for (const share of windows.flatMap((w) => w.processes)) {
        const sum = byName.get(share.name) ?? { name: share.name, cpuMicros: 0 };
        sum.cpuMicros += share.cpuMicros;
        if (share.syscalls !== undefined) sum.syscalls = (sum.syscalls ?? 0) + share.syscalls;
        byName.set(share.name, sum);
      }
      const split = [...byName.values()]
        .map((share) =>
          perCharge(share.name, share.cpuMicros / 1000 / ops, share.syscalls === undefined ? undefined : share.syscalls / ops),
        )
        .join(', ');
      log(`${label}: per ${operation} by process (CPU ms / read+write syscalls): ${split}`);
      notes.push(`${label} (max), per ${operation} by process (CPU ms / read+write syscalls): ${split}.`);
      warnErrors(`${label} max`, result);
      return {
        max: result,
        cpuMsPerOp: windows.reduce((sum, w) => sum + w.cpuMicros, 0) / 1000 / ops,
        pgCpuMsPerOp: windows.reduce((sum, w) => sum + w.pgMicros, 0) / 1000 / ops,
        maxRssKb: Math.max(...windows.map((w) => w.maxRssKb)),
      };
    };

    let dbScenario: Scenario | undefined;
    let dbChild: BenchChild | undefined;
    if (plan.db) {
      const cardIds = await issueBenchCards(database, accounts, cardsPerRotation, amount, currency);
      const child = await spawn('db-limit', 'charges/db-limit-process.ts', { DATABASE_URL: url });
      dbChild = child;
      const setup: DbLimitRun = {
        kind: 'setup',
        cardIds,
        merchantId: accounts.merchantId,
        apiKeyId: accounts.merchantApiKeyId,
        amount,
        currency,
        connections,
      };
      await child.run(setup);
      dbScenario = {
        key: 'db',
        label: 'database limit',
        async window(warmMs, durationMs) {
          await settleDatabase();
          await child.run<LoadResult>({ kind: 'window', durationMs: warmMs } satisfies DbLimitRun);
          await child.mark();
          pgCpu.mark();
          const steal = stealMeter();
          const result = await child.run<LoadResult>({ kind: 'window', durationMs } satisfies DbLimitRun);
          result.stealPct = steal.percent();
          const pgMicros = pgCpu.cpuMicros();
          const { maxRssKb, cpuMicros, syscalls } = await child.stats();
          return {
            result,
            cpuMicros,
            pgMicros,
            maxRssKb,
            processes: [
              { name: 'driver', cpuMicros, syscalls },
              { name: 'postgres', cpuMicros: pgMicros },
            ],
          };
        },
      };
    }
    /** The DB limit's row from its windows; the driver process is not needed after them. */
    const dbLimitRow = async (windows: Window[]) => {
      const { max, cpuMsPerOp, pgCpuMsPerOp, maxRssKb } = aggregate('DB limit', windows);
      dbLimit = max.rps;
      if (dbChild) await stopChild(dbChild);
      notes.push(
        'DB limit row: CPU ms/op is the driver process (the client side of `authorizeCharge`: drizzle, pg); PG CPU ms/op, here and on the charge rows, is every PostgreSQL backend over the same measured windows (from /proc).',
      );
      return rowOf(`DB limit: authorizeCharge via pg pool (${connections} concurrent)`, max, {
        ratio: '1.00× DB limit',
        cpuMsPerOp,
        pgCpuMsPerOp,
        peakRssMiB: mib(maxRssKb),
      });
    };

    if (dbScenario && !plan.dbAlternates) {
      log(`database limit: authorizeCharge through a pg pool, ${connections} concurrent`);
      rows.push(await dbLimitRow((await measureAlternating([dbScenario])).get('db') as Window[]));
    }

    if (plan.stack) {
      // Each measured charge run gets a fresh stack (and data directory), so no run inherits the
      // analytics data, heaps or connection state of the one before it.
      /**
       * The stack under test. `processes` (the default, the deployment shape): each service in
       * its own process — auth, cards, charges, analytics, router, bridge. `single`: all of them
       * in one process, like `npm start`.
       */
      const startBenchStack = async (n: number, topology: Topology = stackTopology) => {
        log(
          `starting GhostPay stack #${n}, ${topology === 'single' ? 'one process' : 'one process per service'} (router with JWT, Redis rate limits, metrics, analytics; bridge)`,
        );
        const stackDir = join(runDir, `stack-${n}`);
        mkdirSync(stackDir, { recursive: true });
        const stackChildren: BenchChild[] = [];
        const urls: Record<string, string> = {};
        const host = async (services: string[]) => {
          const child = await spawn(`stack-${n}${topology === 'single' ? '' : `-${services.join('-')}`}`, 'charges/stack-process.ts', {
            DATABASE_URL: url,
            REDIS_URL: redis.url,
            BENCH_DATA_DIR: stackDir,
            BENCH_SECRETS_DIR: join(runDir, 'secrets'),
            BENCH_STACK_SERVICES: services.join(','),
            BENCH_STACK_URLS: JSON.stringify(urls),
            ...(process.env.ROUTER_EXECUTOR ? { ROUTER_EXECUTOR: process.env.ROUTER_EXECUTOR } : {}),
          });
          stackChildren.push(child);
          Object.assign(urls, child.urls);
        };
        if (topology === 'single') {
          await host(['auth', 'cards', 'charges', 'analytics', 'router', 'bridge']);
        } else {
          // In dependency order: the subgraphs verify tokens against auth's JWKS; the router needs every subgraph.
          await host(['auth']);
          for (const service of ['cards', 'charges', 'analytics', 'router', 'bridge']) await host([service]);
        }
        const routerUrl = urls.router as string;
        const tokenResponse = await fetch(`${routerUrl}/graphql`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({
            query: 'mutation($k: String!) { createToken(apiKey: $k) { accessToken } }',
            variables: { k: accounts.merchantApiKey },
          }),
        });
        const token = ((await tokenResponse.json()) as { data?: { createToken?: { accessToken?: string } } }).data?.createToken
          ?.accessToken;
        if (!token) throw new Error('could not exchange the bench API key for a token');
        return {
          children: stackChildren,
          router: routerUrl,
          bridge: urls.bridge as string,
          authorization: `Bearer ${token}`,
          async mark() {
            await Promise.all(stackChildren.map((child) => child.mark()));
          },
          /** CPU of every stack process since `mark` (in total and by process), and the largest peak RSS of one of them. */
          async stats() {
            const all = await Promise.all(stackChildren.map((child) => child.stats()));
            return {
              cpuMicros: all.reduce((sum, one) => sum + one.cpuMicros, 0),
              byProcess: stackChildren.map((child, i) => ({
                name: child.name,
                cpuMicros: all[i]?.cpuMicros ?? 0,
                syscalls: all[i]?.syscalls ?? 0,
              })),
              maxRssKb: Math.max(...all.map((one) => one.maxRssKb)),
              totalRssKb: all.reduce((sum, one) => sum + one.maxRssKb, 0),
            };
          },
        };
      };
      type Stack = Awaited<ReturnType<typeof startBenchStack>>;
      const stopBenchStack = async (current: Stack) => {
        const { maxRssKb, totalRssKb } = await current.stats();
        await closeLoadPools(current.router);
        await closeLoadPools(current.bridge);
        // Dependents first: the router flushes its analytics batch before analytics stops.
        for (const child of [...current.children].reverse()) await stopChild(child);
        return { max: mib(maxRssKb), total: mib(totalRssKb) };
      };
      let stackNumber = 1;
      let current = await startBenchStack(stackNumber);
      const stackRss = { max: 0, total: 0 };
      const noteRss = (rss: { max: number; total: number }) => {
        stackRss.max = Math.max(stackRss.max, rss.max);
        stackRss.total = Math.max(stackRss.total, rss.total);
      };
      const restartStack = async (topology: Topology = stackTopology) => {
        noteRss(await stopBenchStack(current));
        current = await startBenchStack(++stackNumber, topology);
      };

      type ChargeRequest = Parameters<typeof runLoad>[0]['request'] extends (i: number) => infer R ? R : never;
      type Check = (status: number, body: string) => boolean;
      /** Each call builds the next request on a fresh pre-issued card (a single-use card takes one charge). */
      const onFreshCards = (cardIds: string[], makeRequest: (cardId: string) => ChargeRequest) => {
        let used = 0;
        const request = () => {
          const cardId = cardIds[used++];
          if (!cardId) throw new Error('ran out of pre-issued cards');
          return makeRequest(cardId);
        };
        return { request, used: () => cardIds.slice(0, used) };
      };
      /**
       * A closed-loop maximum through the current stack, as a scenario: each window warms up,
       * then measures, with the CPU of every stack process, PostgreSQL, redis-server and the
       * load generator itself (it shares the two cores: what it takes is not the stack's to use).
       */
      const httpScenario = (
        key: Scenario['key'],
        label: string,
        originOf: () => string,
        request: () => ChargeRequest,
        ok: Check,
      ): Scenario => ({
        key,
        label,
        async window(warmMs, durationMs) {
          await settleDatabase();
          await runLoad({ origin: originOf(), connections, durationMs: warmMs, request, check: ok });
          await current.mark();
          pgCpu.mark();
          redisCpu.mark();
          const generatorCpu = process.cpuUsage();
          const generatorSyscalls = ioSyscalls(process.pid);
          const result = await runLoad({ origin: originOf(), connections, durationMs, request, check: ok });
          const generator = process.cpuUsage(generatorCpu);
          const generatorShare = {
            name: 'load generator',
            cpuMicros: generator.user + generator.system,
            syscalls: ioSyscalls(process.pid) - generatorSyscalls,
          };
          const pgMicros = pgCpu.cpuMicros();
          const redisShare = { name: 'redis-server', cpuMicros: redisCpu.cpuMicros(), syscalls: redisCpu.syscalls() };
          const { cpuMicros, byProcess, maxRssKb } = await current.stats();
          return {
            result,
            cpuMicros,
            pgMicros,
            maxRssKb,
            processes: [
              ...byProcess.map(({ name, cpuMicros, syscalls }) => ({ name: stackProcessLabel(name), cpuMicros, syscalls })),
              { name: 'postgres', cpuMicros: pgMicros },
              redisShare,
              generatorShare,
            ],
          };
        },
      });
      /** Open loop at 70% of a maximum, on a fresh stack, with every process's CPU by second next to each second's p95. */
      const pacedRun = async (label: string, originOf: () => string, request: () => ChargeRequest, ok: Check, maxRps: number) => {
        const rate = Math.max(1, Math.floor(maxRps * 0.7));
        // A fresh stack for the paced run too: see startBenchStack.
        await restartStack();
        await settleDatabase();
        await runLoad({ origin: originOf(), connections, durationMs: warmupMs, ratePerSec: rate, request, check: ok });
        const sampler = startCpuSampler(
          [
            ...current.children.map((child) => ({ name: stackProcessLabel(child.name), pid: child.pid })),
            { name: 'postgres', pid: postmasterPid },
            { name: 'redis-server', pid: redis.pid ?? 0 },
          ],
          { self: 'load generator' },
        );
        const paced = await runLoad({ origin: originOf(), connections, durationMs: measureMs, ratePerSec: rate, request, check: ok });
        const cpuSeconds = formatCpuSeconds(sampler.stop());
        warnErrors(`${label} at 70%`, paced);
        const bySecond = series(paced.p95BySecond);
        const lateBySecond = series(paced.lateBySecond ?? []);
        log(`${label} at 70%: p95 by second (ms): ${bySecond}; the load generator's own lateness, most per second (ms): ${lateBySecond}`);
        log(`${label} at 70%: CPU ms by second: ${cpuSeconds}`);
        notes.push(
          `${label} at 70% of max, p95 of each second's requests (ms): ${bySecond}; the load generator's own lateness sending them, most in each second (ms): ${lateBySecond}; CPU ms in each second: ${cpuSeconds}.`,
        );
        return { paced, rate };
      };

      const mutation =
        'mutation Charge($input: CreateChargeInput!, $key: String!) { createCharge(input: $input, idempotencyKey: $key) { id status amount currency } }';
      const chargeRequest = (cardId: string): ChargeRequest => ({
        method: 'POST',
        path: '/graphql',
        headers: { 'content-type': 'application/json', authorization: current.authorization },
        body: JSON.stringify({
          query: mutation,
          operationName: 'Charge',
          variables: { input: { cardId, amount, currency }, key: randomUUID() },
        }),
      });
      const charged: Check = (status, body) => status === 200 && body.includes('"status":"AUTHORIZED"') && !body.includes('"errors"');
      const restRequest = (cardId: string): ChargeRequest => ({
        method: 'POST',
        path: '/charges',
        headers: { 'content-type': 'application/json', authorization: current.authorization, 'idempotency-key': randomUUID() },
        body: JSON.stringify({ card_id: cardId, amount, currency }),
      });
      const restCharged: Check = (status, body) => status === 201 && body.includes('"authorized"');

      /**
       * GraphQL card(id) reads through the router of the current stack, of cards charged before
       * (the GraphQL maximum's in the full run): measured like the charge maxima (CPU by process,
       * PostgreSQL's). A read is the same trip through the router and a subgraph as a charge,
       * around one indexed select instead of the transaction, so its split prices the hop that
       * the DB limit does not make.
       */
      const measureReads = async (chargedCards: string[]) => {
        log('GraphQL card(id) reads through the router');
        const read = 'query Card($id: ID!) { card(id: $id) { id status amount currency last4 expiresAt } }';
        let i = 0;
        const readRequest = () => ({
          method: 'POST' as const,
          path: '/graphql',
          headers: { 'content-type': 'application/json', authorization: current.authorization },
          body: JSON.stringify({ query: read, operationName: 'Card', variables: { id: chargedCards[i++ % chargedCards.length] } }),
        });
        const readOk = (status: number, body: string) => status === 200 && body.includes('"card":{"id"') && !body.includes('"errors"');
        const readScenario = httpScenario('reads', 'GraphQL card(id) reads', () => current.router, readRequest, readOk);
        const reads = aggregate('GraphQL card(id) reads', (await measureAlternating([readScenario])).get('reads') as Window[], 'read');
        rows.push(
          rowOf('GraphQL card(id) reads via router', reads.max, {
            ratio: ratioTo(reads.max.rps, dbLimit, 'DB limit'),
            cpuMsPerOp: reads.cpuMsPerOp,
            pgCpuMsPerOp: reads.pgCpuMsPerOp,
          }),
        );
      };

      // The maxima: the DB limit, GraphQL and REST in alternating windows on this stack.
      const graphqlCards = plan.graphql
        ? onFreshCards(await issueBenchCards(database, accounts, cardsPerRotation + cardsPerRun, amount, currency), chargeRequest)
        : undefined;
      const restCards = plan.rest
        ? onFreshCards(await issueBenchCards(database, accounts, cardsPerRotation + cardsPerRun, amount, currency), restRequest)
        : undefined;
      const scenarios = [
        plan.dbAlternates ? dbScenario : undefined,
        graphqlCards && httpScenario('graphql', 'GraphQL createCharge', () => current.router, graphqlCards.request, charged),
        restCards && httpScenario('rest', 'REST POST /charges', () => current.bridge, restCards.request, restCharged),
      ].filter((scenario): scenario is Scenario => scenario !== undefined);
      if (scenarios.length > 0) {
        log(
          `${scenarios.map((s) => s.label).join(', ')} through a pg pool / the router / the bridge, ${connections} concurrent${scenarios.length > 1 ? `: ${rounds} alternating windows of ${(windowMs / 1000).toFixed(1)} s each` : ''}`,
        );
      }
      const measured = await measureAlternating(scenarios);
      const windowsOf = (key: Scenario['key']) => measured.get(key) ?? [];
      if (dbScenario && plan.dbAlternates) rows.push(await dbLimitRow(windowsOf('db')));
      const graphql = graphqlCards ? aggregate('GraphQL createCharge', windowsOf('graphql')) : undefined;
      const rest = restCards ? aggregate('REST POST /charges', windowsOf('rest')) : undefined;
      /** "0.52, 0.48, 0.55": a scenario against another, window by window (each pair ran within seconds of each other). */
      const byRound = (key: Scenario['key'], base: Scenario['key']) =>
        windowsOf(key)
          .map((w, i) => {
            const baseRps = windowsOf(base)[i]?.result.rps;
            return baseRps ? (w.result.rps / baseRps).toFixed(2) : '–';
          })
          .join(', ');
      if (scenarios.length > 1) {
        notes.push(
          `The DB limit${graphql ? ', GraphQL' : ''}${rest ? ' and REST' : ''} maxima ran in ${rounds} rounds of alternating ${(windowMs / 1000).toFixed(1)} s windows on one stack (the first window of each after a ${(warmupMs / 1000).toFixed(1)} s warm-up, later ones after ${(laterWarmupMs / 1000).toFixed(1)} s), rotating which went first; their rows combine the windows.${graphql && dbScenario ? ` GraphQL vs the DB limit, round by round: ${byRound('graphql', 'db')}.` : ''}${rest && graphql ? ` REST vs GraphQL, round by round: ${byRound('rest', 'graphql')}.` : ''}`,
        );
      }

      let graphqlMax: number | undefined;
      if (graphql && graphqlCards) {
        graphqlMax = graphql.max.rps;
        rows.push(
          rowOf('GraphQL createCharge via router (max)', graphql.max, {
            ratio: ratioTo(graphql.max.rps, dbLimit, 'DB limit'),
            cpuMsPerOp: graphql.cpuMsPerOp,
            pgCpuMsPerOp: graphql.pgCpuMsPerOp,
          }),
        );
        const usedCards = graphqlCards.used();
        const { paced, rate } = await pacedRun(
          'GraphQL createCharge',
          () => current.router,
          graphqlCards.request,
          charged,
          graphql.max.rps,
        );
        rows.push(
          rowOf(`GraphQL createCharge at 70% of max (${rate}/s offered)`, paced, { ratio: ratioTo(paced.rps, dbLimit, 'DB limit') }),
        );

        await measureReads(usedCards);

        if (stackTopology === 'processes') {
          // The same charges with every service in one process, as `npm start` runs them: one core's worth of JavaScript.
          await restartStack('single');
          log('GraphQL createCharge through the router, all services in one process');
          const { request } = onFreshCards(await issueBenchCards(database, accounts, cardsPerRun, amount, currency), chargeRequest);
          const label = 'GraphQL createCharge (one process)';
          const scenario = httpScenario('one-process', label, () => current.router, request, charged);
          const one = aggregate(label, (await measureAlternating([scenario])).get('one-process') as Window[]);
          rows.push(
            rowOf('GraphQL createCharge via router, all services in one process like npm start (max)', one.max, {
              ratio: ratioTo(one.max.rps, dbLimit, 'DB limit'),
              cpuMsPerOp: one.cpuMsPerOp,
              pgCpuMsPerOp: one.pgCpuMsPerOp,
              peakRssMiB: mib(one.maxRssKb),
              note: 'measured alone, after the alternating windows',
            }),
          );
        }
      }

      if (plan.readsChargeOwnCards) {
        // BENCH_ONLY=reads: no GraphQL maximum charged cards to read, so an unmeasured closed-loop
        // pass of the warm-up's length charges fresh cards through this stack's router, as that
        // run would have (the cards end USED, with their charge), and warms it with charges.
        log(`charging cards through the router for the reads (unmeasured, ${(warmupMs / 1000).toFixed(1)} s)`);
        const cards = onFreshCards(await issueBenchCards(database, accounts, cardsFor(warmupMs), amount, currency), chargeRequest);
        const pass = await runLoad({ origin: current.router, connections, durationMs: warmupMs, request: cards.request, check: charged });
        warnErrors('charges for the reads', pass);
        if (pass.ok === 0) throw new Error('no charge succeeded: no charged cards to read');
        await measureReads(cards.used());
        notes.push(
          `Card reads without the charge runs (BENCH_ONLY=reads): the ${pass.ok} cards read were charged through the router in an unmeasured ${(warmupMs / 1000).toFixed(1)} s closed-loop pass on the same stack just before (in the full run, by the GraphQL maximum, with the 70% run in between); the DB limit ran alone first, in one ${seconds} s window.`,
        );
      }

      if (rest && restCards) {
        const vsGraphql = graphqlMax ? ` (${((rest.max.rps / graphqlMax) * 100).toFixed(0)}% of GraphQL)` : '';
        rows.push(
          rowOf(`REST POST /charges via bridge (max)${vsGraphql}`, rest.max, {
            ratio: ratioTo(rest.max.rps, dbLimit, 'DB limit'),
            cpuMsPerOp: rest.cpuMsPerOp,
            pgCpuMsPerOp: rest.pgCpuMsPerOp,
          }),
        );
        const { paced, rate } = await pacedRun('REST POST /charges', () => current.bridge, restCards.request, restCharged, rest.max.rps);
        rows.push(rowOf(`REST POST /charges at 70% of max (${rate}/s offered)`, paced, { ratio: ratioTo(paced.rps, dbLimit, 'DB limit') }));
      }
      noteRss(await stopBenchStack(current));
      for (const row of rows) if (!row.peakRssMiB && !row.scenario.startsWith('DB')) row.peakRssMiB = stackRss.max;
      const chargeRows = plan.graphql || plan.rest;
      notes.push(
        !chargeRows
          ? `Read row: the stack runs ${stackTopology === 'processes' ? `one process per service (the deployment shape; all six together: ${stackRss.total.toFixed(0)} MiB)` : 'all services in one process, like npm start'} on PostgreSQL + Redis; CPU ms/op is the sum over the stack's processes, peak RSS the largest one.`
          : stackTopology === 'processes'
            ? `Charge rows: the stack runs one process per service (auth, cards, charges, analytics with its embedded store, router, bridge — the deployment shape) on PostgreSQL + Redis; CPU ms/op is the sum over those processes, peak RSS the largest one (all six together: ${stackRss.total.toFixed(0)} MiB). The "one process" row runs the same services in a single process, like npm start. The 70% runs and the one-process run each start on a fresh stack.`
            : 'Charge rows: peak RSS and CPU ms/op are those of the stack process (4 subgraphs + router + bridge + embedded analytics, one process like npm start, on PostgreSQL + Redis); the 70% runs each start on a fresh stack process.',
      );
    }
  }

  if (plan.federation) {
    const hiveDir = resolve(src, '../hive-gateway');
    if (gatewayKinds.includes('hive') && !existsSync(join(hiveDir, 'node_modules'))) {
      log('installing @graphql-hive/gateway into bench/hive-gateway (first run)');
      execFileSync('npm', ['ci', '--no-audit', '--no-fund'], { cwd: hiveDir, stdio: 'inherit' });
    }
    log('federation: starting the four benchmark subgraphs');
    const subgraphs = await spawn('fed-subgraphs', 'federation/subgraph-process.ts', {});
    const supergraphPath = join(runDir, 'bench-supergraph.graphql');
    writeFileSync(supergraphPath, composeBenchSupergraph(subgraphs.urls.base as string));
    const expectedHash = hashData(expectedTestQueryData());
    const issuer = await createTestTokenIssuer();
    // Each request carries its own token, so no gateway can answer many requests from one execution.
    const tokens = await Promise.all(Array.from({ length: 256 }, (_, n) => issuer.bearer({ userId: `usr_bench${n}`, role: 'admin' })));
    const body = JSON.stringify({ query: testQuery, operationName: 'TestQuery' });
    let apolloRps: number | undefined;
    let hiveRps: number | undefined;
    const fedRows: Row[] = [];
    for (const kind of gatewayKinds) {
      const labels: Record<string, string> = {
        apollo: 'Federation: vanilla @apollo/gateway in @apollo/server',
        'apollo-compiled': 'Federation: @apollo/server + gateway, compiled executor only',
        hive: 'Federation: @graphql-hive/gateway (dedup off)',
        'ghostpay-gateway-executor': "Federation: GhostPay router, gateway's own executor",
        ghostpay: 'Federation: GhostPay router, compiled executor',
      };
      log(`federation: ${kind}`);
      let child: BenchChild;
      try {
        child = await spawn(`gateway-${kind}`, 'federation/gateway-process.ts', {
          BENCH_GATEWAY: kind.startsWith('ghostpay') ? 'ghostpay' : kind,
          BENCH_SUPERGRAPH_PATH: supergraphPath,
          BENCH_JWKS: JSON.stringify(issuer.jwks),
          BENCH_JWT_ISSUER: testIssuer,
          BENCH_JWT_AUDIENCE: testAudience,
          ROUTER_EXECUTOR: kind === 'ghostpay-gateway-executor' ? 'gateway' : 'compiled',
        });
      } catch (error) {
        log(`${kind} did not start: ${(error as Error).message.split('\n')[0]}`);
        fedRows.push({ scenario: labels[kind] ?? kind, note: `did not start: ${(error as Error).message.split('\n')[0]}` });
        continue;
      }
      const url = new URL(child.urls.graphql as string);
      const seenBodies = new Map<string, boolean>();
      const check = (status: number, text: string) => {
        if (status !== 200) return false;
        // Every response is hashed; a body seen before is judged by its hash, a new one by its data.
        const bodyHash = createHash('sha256').update(text).digest('hex');
        let verdict = seenBodies.get(bodyHash);
        if (verdict === undefined) {
          const parsed = JSON.parse(text) as { data?: unknown; errors?: unknown };
          verdict = !parsed.errors && hashData(parsed.data) === expectedHash;
          if (seenBodies.size < 100) seenBodies.set(bodyHash, verdict);
        }
        return verdict;
      };
      const request = (i: number) => ({
        method: 'POST' as const,
        path: url.pathname,
        headers: { 'content-type': 'application/json', authorization: tokens[i % tokens.length] as string },
        body,
      });
      await runLoad({ origin: url.origin, connections: fedConnections, durationMs: warmupMs, request, check });
      await child.mark();
      await subgraphs.mark();
      const result = await runLoad({ origin: url.origin, connections: fedConnections, durationMs: measureMs, request, check });
      const { cpuMicros, maxRssKb } = await child.stats();
      const ops = Math.max(1, result.ok + result.errors);
      const subgraphCpu = (await subgraphs.stats()).cpuMicros / 1000 / ops;
      await stopChild(child);
      warnErrors(kind, result);
      if (kind === 'apollo') apolloRps = result.rps;
      if (kind === 'hive') hiveRps = result.rps;
      fedRows.push(
        rowOf(labels[kind] ?? kind, result, {
          cpuMsPerOp: cpuMicros / 1000 / ops,
          peakRssMiB: mib(maxRssKb),
          note: [
            kind.startsWith('ghostpay') && hiveRps ? `${(result.rps / hiveRps).toFixed(2)}× hive` : '',
            `subgraphs ${subgraphCpu.toFixed(2)} CPU ms/op`,
          ]
            .filter(Boolean)
            .join('; '),
        }),
      );
    }
    for (const row of fedRows) row.ratio = row.rps !== undefined ? ratioTo(row.rps, apolloRps, 'apollo') : '–';
    rows.push(...fedRows);
    const { maxRssKb } = await subgraphs.stats();
    await stopChild(subgraphs);
    notes.push(
      `Federation: The Guild's graphql-gateways-benchmark schema, data and TestQuery (re-created in bench/src/federation/), ${fedConnections} concurrent, every response hashed against the expected data computed without federation (errors = any mismatch). Subgraph server peak RSS ${mib(maxRssKb).toFixed(0)} MiB.`,
    );
  }

  notes.push(
    `Charge runs: ${connections} concurrent, ${seconds} s measured per row (the maxima in the alternating windows above when more than one ran; every other run in one window after a ${(warmupMs / 1000).toFixed(1)} s warm-up), a fresh pre-issued card per charge; the 70% rows are open-loop at 70% of the max row's rate, latency counted from each request's scheduled time.`,
  );
  const table = renderTable(rows);
  console.log(table);
  if (fullRun) {
    writeResults(resolve(src, '../RESULTS.md'), machine, table, notes);
    log('wrote bench/RESULTS.md');
  } else {
    log("a partial run (BENCH_ONLY or BENCH_GATEWAYS): bench/RESULTS.md, the full run's figures, is left as it was");
  }
}

const finished = (async () => {
  try {
    await main();
  } catch (error) {
    // Interrupted: the failure is the teardown's doing, not news.
    if (!stopping) console.error(error);
    process.exitCode = 1;
  } finally {
    await teardown();
    clearTimeout(watchdog);
  }
})();
await finished;
