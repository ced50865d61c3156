import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { analyticsConfigSchema, createAnalyticsService, embeddedAnalyticsDir, openAnalyticsStore } from '@ghostpay/analytics';
import { authConfigSchema, createAuthService } from '@ghostpay/auth';
import { cardsConfigSchema, createCardsService } from '@ghostpay/cards';
import { chargesConfigSchema, createChargesService } from '@ghostpay/charges';
import { createDatabase, type DatabaseHandle, embeddedDatabaseDir, migrate } from '@ghostpay/db';
import { bridgeConfigSchema, createBridge, manifestPath } from '@ghostpay/openapi-bridge';
import {
  createJwtVerifier,
  createLogger,
  createMetricsRegistry,
  createSecretsProvider,
  type Logger,
  type LoggerOptions,
  parseConfig,
  type SecretsProvider,
  type z,
} from '@ghostpay/platform';
import {
  createAnalyticsEmitter,
  createApiKeyLookup,
  createRouter,
  rateLimitRedisOptions,
  routerConfigSchema,
  routerSubscriptionsConfigSchema,
  routerSubscriptionsSettings,
  subscriptionsApiKeySecret,
  toAnalyticsRequestEvent,
} from '@ghostpay/router';
import { Redis } from 'ioredis';
import { type DataDirLock, lockDataDir } from './data-dir-lock.ts';
import { type DevCredentials, readDevCredentials, writeDevCredentials } from './dev-credentials.ts';
import { ensureDevSecrets } from './dev-secrets.ts';
import { describeDatabase, ensureDevUser, withoutSecrets } from './dev-seed.ts';
import { StackStartError, StackStartInterruptedError } from './start-error.ts';

type Env = Record<string, string | undefined>;

export interface StackOptions {
  /** Environment the services read (ports, limits, ...). @default process.env */
  env?: Env;
  /** Where PGlite, the analytics store, dev secrets and credentials live. @default GHOSTPAY_DATA_DIR or `.data` */
  dataDir?: string;
  /** Listen on port 0 everywhere (tests). @default false */
  randomPorts?: boolean;
  /** The stack's own lines (`service: stack`). @default info (LOG_LEVEL) on stdout */
  logger?: Logger;
  /**
   * Each service logs through its own logger, with its own `service` (a child of `logger` would
   * carry `service` twice: pino appends bindings, it does not replace them).
   * @default `logger`'s level, stdout
   */
  log?: { level?: string; destination?: LoggerOptions['destination'] };
  /**
   * Stops the start (`npm start` aborts it on SIGINT/SIGTERM, with the signal's name as the
   * reason): the step under way finishes, what has started is stopped in reverse order, and
   * `startStack` throws `StackStartInterruptedError`. After the start, `close()` stops the stack.
   */
  signal?: AbortSignal;
}

export interface StackUrls {
  router: string;
  graphql: string;
  playground: string;
  bridge: string;
  restDocs: string;
  auth: string;
  cards: string;
  charges: string;
  analytics: string;
}

export interface Stack {
  readonly urls: StackUrls;
  readonly credentials: DevCredentials;
  /**
   * True when this start issued the dev API keys: the first start on this database, or the
   * credentials file's keys were not valid in it (the banner shows keys only then).
   */
  readonly firstStart: boolean;
  readonly dataDir: string;
  readonly database: DatabaseHandle;
  /** Where the data is, for people: the database (`describeDatabase`), the analytics store and the rate-limit counters. */
  readonly stores: { database: string; analytics: string; rateLimits: string };
  /** Stops everything in reverse order of start; data stays on disk. */
  close(): Promise<void>;
}

const roles = ['admin', 'merchant', 'user'] as const;

/**
 * Starts the whole supergraph in this process on the embedded default: the four subgraphs,
 * the router and the REST bridge, each on its own port and talking real HTTP, over one
 * PGlite database and the embedded analytics store under the data directory.
 */
export async function startStack(options: StackOptions = {}): Promise<Stack> {
  const baseEnv = options.env ?? process.env;
  const dataDir = resolve(options.dataDir ?? baseEnv.GHOSTPAY_DATA_DIR ?? '.data');
  const logger = options.logger ?? createLogger({ service: 'stack', level: baseEnv.LOG_LEVEL ?? 'info' });
  const secretsDir = baseEnv.SECRETS_DIR ?? join(dataDir, 'secrets');
  // Auth sits behind the router, which passes the client's address in x-forwarded-for: one
  // trusted hop, so failed token exchanges are limited per client rather than for everyone.
  const env: Env = { TRUSTED_PROXY_HOPS: '1', ...baseEnv, GHOSTPAY_DATA_DIR: dataDir, SECRETS_DIR: secretsDir };
  // Every service's variables are checked before anything is opened or started: a bad one
  // stops the start with every problem listed, not with some services up and the database
  // open (loadConfig, called as each service started, exited the process there).
  const configs = checkConfigs(env);
  const port = (name: string, fallback: number) => (options.randomPorts ? 0 : Number(env[name] ?? fallback));
  const host = env.HOST ?? '127.0.0.1';
  /** Starts a service on its port; a port that cannot be had says which variable moves it. */
  const listen = async <T>(variable: string, fallback: number, start: (port: number, host: string) => Promise<T>): Promise<T> => {
    const chosen = port(variable, fallback);
    try {
      return await start(chosen, host);
    } catch (error) {
      const why = listenProblems[(error as NodeJS.ErrnoException).code ?? ''];
      if (!why) throw error;
      throw new StackStartError(`cannot listen on ${host}:${chosen} (${variable}): ${why}`, { cause: error });
    }
  };

  /** Between steps: a stop asked for during the step ends the start here (the catch below closes what started). */
  const goOn = () => {
    if (options.signal?.aborted) throw new StackStartInterruptedError(String(options.signal.reason ?? 'abort'));
  };
  goOn();
  const lock = openDataDir(dataDir, logger);
  const closers: Array<() => Promise<unknown>> = [async () => lock.release()];
  const close = async () => {
    for (const closeOne of closers.reverse()) {
      await closeOne().catch((error: unknown) => logger.error({ err: error }, 'error while stopping'));
    }
    closers.length = 0;
  };

  try {
    if (!baseEnv.SECRETS_DIR) {
      const created = ensureDevSecrets(secretsDir);
      if (created.length) logger.info({ secretNames: created, dir: secretsDir }, 'created development secrets');
    }
    const secrets: SecretsProvider = createSecretsProvider({ dir: secretsDir, env, logger });
    closers.push(async () => secrets.close());

    const database = await createDatabase({
      url: env.DATABASE_URL,
      dataDir: embeddedDatabaseDir(dataDir),
      applicationName: 'ghostpay-stack',
      preparedStatements: configs.charges.DATABASE_PREPARED_STATEMENTS,
    });
    closers.push(() => database.close());
    goOn();
    await migrate(database, { onWarning: (message) => logger.warn(message) });
    goOn();

    const serviceLogger = (service: string) =>
      createLogger({ service, level: options.log?.level ?? logger.level, destination: options.log?.destination });

    const auth = createAuthService({ database, secrets, logger: serviceLogger('auth'), config: configs.auth });
    await listen('AUTH_PORT', 4001, (chosen, on) => auth.start(chosen, on));
    closers.push(() => auth.close());
    goOn();
    const databaseName = describeDatabase(env.DATABASE_URL, embeddedDatabaseDir(dataDir));
    // Auth's signing keys are stored encrypted under `signing-kek`: a database first started
    // with another data directory's development secrets answers every token exchange with a
    // 500. Say so at start, with what to do, rather than seeding keys that cannot be used.
    try {
      await auth.keyRing.signingKey();
    } catch (error) {
      throw new StackStartError(
        `${databaseName} holds signing keys that ${join(secretsDir, 'signing-kek')} cannot decrypt: the database was set up with ` +
          "another data directory's secrets. Start with that directory (GHOSTPAY_DATA_DIR, or SECRETS_DIR=<it>/secrets), or with a database of its own.",
        { cause: error },
      );
    }

    // The credentials file and the router's key file live in the data directory, the users in
    // the database: they can part (a new DATABASE_URL, a lost file, a data directory new to an
    // already-seeded database). Each start checks the keys against this database and issues
    // fresh ones for the same users (found by email) when they are not valid here.
    const credentialsPath = join(dataDir, 'dev-credentials.json');
    const known = readDevCredentials(credentialsPath);
    const seeded: Partial<DevCredentials> = {};
    let keysIssued = false;
    for (const role of roles) {
      const { credential, issued } = await ensureDevUser(
        database,
        { name: `Dev ${role}`, email: `${role}@ghostpay.dev`, role },
        known?.[role],
      );
      seeded[role] = credential;
      keysIssued ||= issued;
      goOn();
    }
    const credentials: DevCredentials = { database: databaseName, ...(seeded as Omit<DevCredentials, 'database'>) };
    if (keysIssued || known?.database !== databaseName) writeDevCredentials(credentialsPath, credentials);
    if (keysIssued && known)
      logger.warn({ file: credentialsPath, database: databaseName }, 'dev API keys were not valid in this database: issued fresh ones');
    // The router subscribes upstream as its own service account (an admin API key in the
    // `router-subscriptions-api-key` secret); in development the stack keeps it valid the same way.
    const routerKeyFile = join(secretsDir, subscriptionsApiKeySecret);
    if (!baseEnv.SECRETS_DIR) {
      const current = existsSync(routerKeyFile) ? readFileSync(routerKeyFile, 'utf8').trim() : undefined;
      const routerUser = { name: 'Router service', email: 'router@ghostpay.internal', role: 'admin' } as const;
      const { credential, issued } = await ensureDevUser(database, routerUser, current ? { userId: '', apiKey: current } : undefined);
      if (issued) writeFileSync(routerKeyFile, `${credential.apiKey}\n`, { mode: 0o600 });
    }

    const authConfig = configs.auth;
    const verifier = createJwtVerifier({
      jwksUrl: `${auth.url}/.well-known/jwks.json`,
      issuer: authConfig.JWT_ISSUER,
      audience: authConfig.JWT_AUDIENCE,
      // One verifier serves cards, charges, analytics and the router in this process.
      logger: logger.child({ component: 'jwks' }),
    });

    const cards = createCardsService({
      database,
      secrets,
      verifier,
      logger: serviceLogger('cards'),
      config: configs.cards,
    });
    await listen('CARDS_PORT', 4002, (chosen, on) => cards.start(chosen, on));
    closers.push(() => cards.close());
    goOn();

    const charges = createChargesService({
      database,
      verifier,
      logger: serviceLogger('charges'),
      config: configs.charges,
    });
    await listen('CHARGES_PORT', 4003, (chosen, on) => charges.start(chosen, on));
    closers.push(() => charges.close());
    goOn();

    const analyticsConfig = configs.analytics;
    // The service owns the store from here: its close(), or its start() when that fails (its
    // port taken), closes it and releases the embedded store's directory lock.
    const analytics = createAnalyticsService({
      store: await openAnalyticsStore(analyticsConfig),
      secrets,
      verifier,
      logger: serviceLogger('analytics'),
      config: analyticsConfig,
    });
    await listen('ANALYTICS_PORT', 4004, (chosen, on) => analytics.start(chosen, on));
    closers.push(() => analytics.close());
    goOn();

    // The emitter's counters (analytics_events_sent/dropped_total) are served on the router's /metrics.
    const routerRegistry = createMetricsRegistry('router');
    const emitter = createAnalyticsEmitter({
      url: `${analytics.url}/internal/events`,
      token: () => secrets.get('analytics-ingest-token'),
      registry: routerRegistry,
      logger: serviceLogger('router').child({ component: 'analytics-emitter' }),
    });
    const routerConfig = configs.router;
    const subgraphUrls = {
      auth: `${auth.url}/graphql`,
      cards: `${cards.url}/graphql`,
      charges: `${charges.url}/graphql`,
      analytics: `${analytics.url}/graphql`,
      ...routerConfig.ROUTER_SUBGRAPH_URLS,
    };
    // REDIS_URL: shared, exact rate-limit counters, built as router/src/main.ts builds them
    // (commands fail fast while Redis is unreachable, so the limiter falls back to local limits).
    const redis = routerConfig.REDIS_URL
      ? new Redis(routerConfig.REDIS_URL, rateLimitRedisOptions(routerConfig.ROUTER_REDIS_TIMEOUT_MS))
      : undefined;
    if (redis) {
      redis.on('error', (error: Error) => logger.debug({ err: error.message }, 'redis error'));
      closers.push(async () => redis.disconnect());
      // A stop asked for meanwhile ends the wait at once, not after the 5 s.
      const stop = new AbortController();
      const ready = await Promise.race([
        new Promise<boolean>((done) => redis.once('ready', () => done(true))),
        new Promise<boolean>((done) => setTimeout(() => done(false), 5_000).unref()),
        new Promise<boolean>((done) => options.signal?.addEventListener('abort', () => done(false), { signal: stop.signal })),
      ]);
      stop.abort();
      goOn();
      if (!ready) logger.warn('redis not reachable at start: rate limits are local until it is');
    }
    const router = createRouter({
      redis,
      subscriptions: routerSubscriptionsSettings(configs.routerSubscriptions, subgraphUrls, secrets),
      config: {
        ...routerConfig,
        // The bridge calls the router by hash only: its manifest is always trusted.
        ROUTER_PQ_MANIFESTS: [...new Set([manifestPath, ...routerConfig.ROUTER_PQ_MANIFESTS])],
        ROUTER_SUBGRAPH_URLS: subgraphUrls,
      },
      logger: serviceLogger('router'),
      registry: routerRegistry,
      verifier,
      apiKeyLookup: createApiKeyLookup(database),
      onRequestEvent: (event) => emitter.emit(toAnalyticsRequestEvent(event)),
      onClose: () => emitter.close(),
    });
    await listen('ROUTER_PORT', 4000, (chosen, on) => router.start(chosen, on));
    closers.push(() => router.close());
    goOn();

    const bridge = createBridge({
      config: { ...configs.bridge, ROUTER_URL: `${router.url}/graphql` },
      logger: serviceLogger('openapi-bridge'),
    });
    const bridgeUrl = await listen('BRIDGE_PORT', 8080, (chosen, on) => bridge.start(chosen, on));
    closers.push(() => bridge.close());
    goOn();

    return {
      urls: {
        router: router.url,
        graphql: `${router.url}/graphql`,
        playground: `${router.url}/playground`,
        bridge: bridgeUrl,
        restDocs: `${bridgeUrl}/docs`,
        auth: auth.url,
        cards: cards.url,
        charges: charges.url,
        analytics: analytics.url,
      },
      credentials,
      firstStart: keysIssued,
      dataDir,
      database,
      stores: {
        database: database.kind === 'pg' ? `PostgreSQL ${databaseName}` : `PGlite ${embeddedDatabaseDir(dataDir)}`,
        analytics: analyticsConfig.MONGODB_URL
          ? `MongoDB ${withoutSecrets(analyticsConfig.MONGODB_URL)}`
          : `embedded store ${embeddedAnalyticsDir(dataDir)}`,
        rateLimits: routerConfig.REDIS_URL ? `Redis ${withoutSecrets(routerConfig.REDIS_URL)}` : 'in process',
      },
      close,
    };
  } catch (error) {
    await close();
    throw error;
  }
}

/** What a failed listen means, for the codes a person can do something about. */
const listenProblems: Record<string, string> = {
  EADDRINUSE: 'the port is in use (another npm start, or another program): stop it, or set the variable to a free port',
  EACCES: 'not allowed to listen on that port (below 1024 needs privileges): set the variable to a port above 1023',
  EADDRNOTAVAIL: 'this machine has no such address: set HOST to one of its addresses, or leave it unset for 127.0.0.1',
};

/** Every service's config from `env`, or a StackStartError listing every problem of every service. */
function checkConfigs(env: Env) {
  const schemas = {
    auth: authConfigSchema,
    cards: cardsConfigSchema,
    charges: chargesConfigSchema,
    analytics: analyticsConfigSchema,
    router: routerConfigSchema,
    routerSubscriptions: routerSubscriptionsConfigSchema,
    bridge: bridgeConfigSchema,
  };
  const names: Record<keyof typeof schemas, string> = {
    auth: 'auth',
    cards: 'cards',
    charges: 'charges',
    analytics: 'analytics',
    router: 'router',
    routerSubscriptions: 'router',
    bridge: 'openapi-bridge',
  };
  const parsed = {} as { [K in keyof typeof schemas]: z.infer<(typeof schemas)[K]> };
  const problems = new Set<string>();
  for (const key of Object.keys(schemas) as Array<keyof typeof schemas>) {
    const result = parseConfig(schemas[key], env);
    if (result.ok) (parsed as Record<string, unknown>)[key] = result.config;
    else for (const problem of result.problems) problems.add(`${names[key]}: ${problem}`);
  }
  if (problems.size) throw new StackStartError(`invalid configuration\n${[...problems].map((line) => `  ${line}`).join('\n')}`);
  return parsed;
}

/**
 * Creates the data directory for its owner only (PGlite writes its files world-readable, the
 * analytics store keeps request logs), or says why it cannot be used. A directory that already
 * exists keeps its mode (it may be one the owner chose to share); open to others, it is warned about.
 */
function openDataDir(dataDir: string, logger: Logger): DataDirLock {
  try {
    if (!existsSync(dataDir)) mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    const { mode } = statSync(dataDir);
    if (mode & 0o077) {
      logger.warn(
        { dir: dataDir, mode: (mode & 0o777).toString(8) },
        `the data directory is open to other users (its database, analytics logs and dev credentials): chmod 700 ${dataDir}`,
      );
    }
    return lockDataDir(dataDir);
  } catch (error) {
    if (error instanceof StackStartError) throw error;
    // Not writable (the lock is the first file written), or not a directory: said plainly.
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'EACCES' && code !== 'EPERM' && code !== 'EROFS' && code !== 'ENOTDIR' && code !== 'EEXIST') throw error;
    throw new StackStartError(
      `cannot use ${dataDir} as the data directory (${code}): set GHOSTPAY_DATA_DIR to a directory this user can write`,
      {
        cause: error,
      },
    );
  }
}
