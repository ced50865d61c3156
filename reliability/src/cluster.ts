import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { seedUser } from '@ghostpay/auth';
import type { DatabaseHandle } from '@ghostpay/db';
import type { Role } from '@ghostpay/platform';
import { freePort } from '@ghostpay/test-support';
import type { JWK } from 'jose';
import { type LoadBalancer, startLoadBalancer } from './load-balancer.ts';

const repoRoot = resolve(import.meta.dirname, '../..');
/** Node 24 from the workspace (the system node may be older). */
export const nodeBin = join(repoRoot, 'node_modules/.bin/node');

export type ServiceName = 'auth' | 'cards' | 'charges' | 'analytics' | 'router' | 'bridge' | 'charges2' | 'router2';

const entryPoints: Record<ServiceName, string> = {
  auth: 'subgraphs/auth/src/main.ts',
  cards: 'subgraphs/cards/src/main.ts',
  charges: 'subgraphs/charges/src/main.ts',
  analytics: 'subgraphs/analytics/src/main.ts',
  // The router's own main.ts does not ship request events; this launcher adds the emitter.
  router: 'router/src/main.ts',
  bridge: 'openapi-bridge/src/main.ts',
  charges2: 'subgraphs/charges/src/main.ts',
  router2: 'router/src/main.ts',
};

const portEnv: Record<ServiceName, string> = {
  auth: 'AUTH_PORT',
  cards: 'CARDS_PORT',
  charges: 'CHARGES_PORT',
  analytics: 'ANALYTICS_PORT',
  router: 'ROUTER_PORT',
  bridge: 'BRIDGE_PORT',
  charges2: 'CHARGES_PORT',
  router2: 'ROUTER_PORT',
};

/** One service running as its own OS process, restartable on the same port. */
export interface ServiceProcess {
  readonly name: string;
  readonly port: number;
  readonly url: string;
  /** Every stdout/stderr line this service printed, across restarts. */
  readonly logs: string[];
  readonly pid: number | undefined;
  running(): boolean;
  start(): Promise<void>;
  /** Sends `signal` and waits for the exit (SIGKILL after `timeoutMs`). */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<void>;
}

async function waitUntil(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export function startServiceProcess(options: {
  name: string;
  entry: string;
  port: number;
  env: Record<string, string>;
  readyPath?: string;
  startTimeoutMs?: number;
}): ServiceProcess {
  const url = `http://127.0.0.1:${options.port}`;
  const logs: string[] = [];
  let child: ChildProcess | undefined;
  const collect = (stream: NodeJS.ReadableStream | null) => {
    let partial = '';
    stream?.setEncoding('utf8');
    stream?.on('data', (chunk: string) => {
      const lines = (partial + chunk).split('\n');
      partial = lines.pop() ?? '';
      logs.push(...lines.filter(Boolean));
    });
  };
  const service: ServiceProcess = {
    name: options.name,
    port: options.port,
    url,
    logs,
    get pid() {
      return child?.pid;
    },
    running: () => !!child && child.exitCode === null && child.signalCode === null,
    async start() {
      const spawned = spawn(nodeBin, [join(repoRoot, options.entry)], {
        cwd: repoRoot,
        env: { PATH: process.env.PATH ?? '', ...options.env },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      child = spawned;
      collect(spawned.stdout);
      collect(spawned.stderr);
      const exited = new Promise<never>((_, reject) =>
        spawned.once('exit', (code) => reject(new Error(`${options.name} exited with ${code}: ${logs.slice(-5).join('\n')}`))),
      );
      exited.catch(() => {});
      await Promise.race([
        exited,
        waitUntil(
          async () => (await fetch(`${url}${options.readyPath ?? '/readyz'}`, { signal: AbortSignal.timeout(1_000) })).ok,
          options.startTimeoutMs ?? 60_000,
          `${options.name} to be ready`,
        ),
      ]);
    },
    async stop(signal = 'SIGTERM', timeoutMs = 15_000) {
      const current = child;
      if (!current || current.exitCode !== null || current.signalCode !== null) return;
      await new Promise<void>((done) => {
        const timer = setTimeout(() => current.kill('SIGKILL'), timeoutMs);
        current.once('exit', () => {
          clearTimeout(timer);
          done();
        });
        current.kill(signal);
      });
    },
  };
  return service;
}

/**
 * A JWKS endpoint the services trust: the auth service's live key set plus one extra test
 * key, so the suite can sign tokens with exactly the claims it wants (expired, wrong
 * audience, …) and prove that the very same token with good claims is accepted.
 */
async function startJwksMerger(authJwksUrl: () => string, extraKey: JWK): Promise<{ url: string; server: Server }> {
  const server = createServer(async (_req, res) => {
    try {
      const upstream = (await (await fetch(authJwksUrl(), { signal: AbortSignal.timeout(2_000) })).json()) as { keys: JWK[] };
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'max-age=5' });
      res.end(JSON.stringify({ keys: [...upstream.keys, extraKey] }));
    } catch {
      res.writeHead(503).end();
    }
  });
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  const address = server.address();
  if (!address || typeof address === 'string') throw new Error('no address');
  return { url: `http://127.0.0.1:${address.port}/jwks.json`, server };
}

/** The secrets every service reads, random per cluster (formats: stack/src/dev-secrets.ts). */
function writeSecrets(dir: string) {
  const values: Record<string, string> = {
    'signing-kek': `rel1:${randomBytes(32).toString('base64')}`,
    'pan-encryption-keys': `rel1:${randomBytes(32).toString('base64')}`,
    'cvc-key': randomBytes(32).toString('base64'),
    'pan-fingerprint-key': randomBytes(32).toString('base64'),
    'analytics-ingest-token': randomBytes(32).toString('base64url'),
  };
  for (const [name, value] of Object.entries(values)) writeFileSync(join(dir, name), `${value}\n`, { mode: 0o600 });
}

export interface ClusterOptions {
  databaseUrl: string;
  redisUrl?: string;
  /** Extra env for every service (e.g. rate limits). */
  env?: Record<string, string>;
  /** The public half of the suite's own signing key, published beside auth's keys. */
  testJwk: JWK;
  /** Which services to start. @default all but the replicas */
  services?: ServiceName[];
  /**
   * Two charges processes and two routers, each pair behind a round-robin load balancer
   * (routers → charges LB; clients and the bridge → router LB). @default false
   */
  replicas?: boolean;
}

export interface Cluster {
  readonly services: Record<ServiceName, ServiceProcess>;
  readonly graphqlUrl: string;
  readonly bridgeUrl: string;
  readonly jwksUrl: string;
  /** Present with `replicas`: the balancers in front of the two routers and the two charges processes. */
  readonly balancers?: { router: LoadBalancer; charges: LoadBalancer };
  readonly secretsDir: string;
  /** GHOSTPAY_DATA_DIR of the services (the embedded analytics store lives here). */
  readonly dataDir: string;
  /** Every log line of every service so far. */
  allLogs(): string[];
  close(): Promise<void>;
}

/**
 * Starts auth, cards, charges, analytics, the router and the bridge as separate OS processes
 * on loopback ports, over one real PostgreSQL database (and Redis when given).
 */
export async function startCluster(options: ClusterOptions): Promise<Cluster> {
  const base = mkdtempSync(join(tmpdir(), 'ghostpay-rel-'));
  const secretsDir = join(base, 'secrets');
  const dataDir = join(base, 'data');
  for (const dir of [secretsDir, dataDir]) rmSync(dir, { recursive: true, force: true });
  mkdirSync(secretsDir, { mode: 0o700 });
  mkdirSync(dataDir);
  writeSecrets(secretsDir);
  const names: ServiceName[] = ['auth', 'cards', 'charges', 'analytics', 'router', 'bridge', 'charges2', 'router2'];
  const ports = Object.fromEntries(await Promise.all(names.map(async (n) => [n, await freePort()] as const))) as Record<
    ServiceName,
    number
  >;
  const local = (n: ServiceName) => `http://127.0.0.1:${ports[n]}`;
  const balancers = options.replicas
    ? {
        router: await startLoadBalancer(() => [local('router'), local('router2')]),
        charges: await startLoadBalancer(() => [local('charges'), local('charges2')]),
      }
    : undefined;
  const routerUrl = balancers ? balancers.router.url : local('router');
  const jwks = await startJwksMerger(() => `http://127.0.0.1:${ports.auth}/.well-known/jwks.json`, options.testJwk);
  const env: Record<string, string> = {
    NODE_ENV: 'production',
    LOG_LEVEL: 'info',
    HOST: '127.0.0.1',
    DATABASE_URL: options.databaseUrl,
    SECRETS_DIR: secretsDir,
    GHOSTPAY_DATA_DIR: dataDir,
    JWKS_URL: jwks.url,
    APOLLO_TELEMETRY_DISABLED: 'true',
    ROUTER_SUBGRAPH_URLS: (['auth', 'cards', 'charges', 'analytics'] as const)
      .map((n) => `${n}=${n === 'charges' && balancers ? balancers.charges.url : local(n)}/graphql`)
      .join(','),
    ROUTER_PQ_MANIFESTS: join(repoRoot, 'openapi-bridge/persisted-queries.json'),
    ROUTER_URL: `${routerUrl}/graphql`,
    ROUTER_ANALYTICS_URL: `http://127.0.0.1:${ports.analytics}/internal/events`,
    // Subscriptions are covered by the router's own suite; these routers serve HTTP only.
    ROUTER_SUBSCRIPTIONS: 'false',
    // Load scenarios send far more than the product default of 100/minute per key.
    ROUTER_RATE_LIMIT_PER_MINUTE: '1000000',
    ROUTER_ANONYMOUS_RATE_LIMIT_PER_MINUTE: '1000000',
    FAILED_EXCHANGE_LIMIT_PER_ADDRESS: '100000',
    FAILED_EXCHANGE_LIMIT_PER_KEY: '100000',
    FAILED_EXCHANGE_LIMIT_PER_KEY_ALL_ADDRESSES: '100000',
    SETTLEMENT_DELAY_MS: '500',
    ...(options.redisUrl ? { REDIS_URL: options.redisUrl } : {}),
    ...options.env,
  };
  const services = Object.fromEntries(
    names.map((name) => [
      name,
      startServiceProcess({ name, entry: entryPoints[name], port: ports[name], env: { ...env, [portEnv[name]]: String(ports[name]) } }),
    ]),
  ) as Record<ServiceName, ServiceProcess>;
  const wanted = new Set(options.services ?? names.filter((n) => options.replicas || (n !== 'charges2' && n !== 'router2')));
  const cluster: Cluster = {
    services,
    graphqlUrl: `${routerUrl}/graphql`,
    ...(balancers ? { balancers } : {}),
    bridgeUrl: services.bridge.url,
    jwksUrl: jwks.url,
    secretsDir,
    dataDir,
    allLogs: () => names.flatMap((n) => services[n].logs),
    async close() {
      await Promise.all(names.map((n) => services[n].stop('SIGTERM', 10_000)));
      await Promise.all([balancers?.router.close(), balancers?.charges.close()]);
      await new Promise((done) => jwks.server.close(done));
      jwks.server.closeAllConnections();
      rmSync(base, { recursive: true, force: true });
    },
  };
  try {
    // Auth first: the others fetch its JWKS (through the merger) when the first token arrives.
    if (wanted.has('auth')) await services.auth.start();
    await Promise.all(
      (['cards', 'charges', 'charges2', 'analytics'] as const).filter((n) => wanted.has(n)).map((n) => services[n].start()),
    );
    await Promise.all((['router', 'router2'] as const).filter((n) => wanted.has(n)).map((n) => services[n].start()));
    if (wanted.has('bridge')) await services.bridge.start();
  } catch (error) {
    await cluster.close();
    throw error;
  }
  return cluster;
}

export interface Party {
  userId: string;
  apiKey: string;
  apiKeyId: string;
  role: Role;
  token: string;
}

/** Seeds a user with an API key and exchanges the key for an access token through the router. */
export async function createParty(database: DatabaseHandle, graphqlUrl: string, role: Role, label: string): Promise<Party> {
  const suffix = randomBytes(4).toString('hex');
  const { user, apiKey, apiKeyId } = await seedUser(database, {
    name: `${label} ${suffix}`,
    email: `${label}-${suffix}@reliability.test`,
    role,
  });
  const token = await exchangeApiKey(graphqlUrl, apiKey);
  return { userId: user.id, apiKey, apiKeyId, role, token };
}

export async function exchangeApiKey(graphqlUrl: string, apiKey: string): Promise<string> {
  const result = await graphql(graphqlUrl, 'mutation ($k: String!) { createToken(apiKey: $k) { accessToken } }', { k: apiKey });
  const token = (result.json as { data?: { createToken?: { accessToken?: string } } } | undefined)?.data?.createToken?.accessToken;
  if (!token) throw new Error(`token exchange failed: ${result.status} ${result.text}`);
  return token;
}

export interface HttpResult {
  status: number;
  text: string;
  json: unknown;
  headers: Headers;
}

/** One raw HTTP request; never throws on a status, only on a transport failure. */
export async function request(url: string, init: RequestInit & { timeoutMs?: number } = {}): Promise<HttpResult> {
  const response = await fetch(url, { ...init, signal: AbortSignal.timeout(init.timeoutMs ?? 15_000) });
  const text = await response.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: response.status, text, json, headers: response.headers };
}

export function graphql(url: string, query: string, variables?: Record<string, unknown>, token?: string): Promise<HttpResult> {
  return request(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify({ query, variables }),
  });
}

/** The GraphQL error codes of a result. */
export function errorCodes(result: HttpResult): string[] {
  const errors = (result.json as { errors?: { extensions?: { code?: string } }[] } | undefined)?.errors ?? [];
  return errors.map((e) => e.extensions?.code ?? 'NO_CODE');
}

export function dataOf<T = Record<string, unknown>>(result: HttpResult): T | undefined {
  return (result.json as { data?: T } | undefined)?.data ?? undefined;
}

/** A stack frame as Node prints one, or a field that carries one. */
export const stackTracePattern = /\bat (?:\S+ )?\(?(?:file:\/\/|node:|\/)[^)\s]*:\d+(?::\d+)?\)?|stacktrace/i;
