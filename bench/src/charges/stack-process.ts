/**
 * The GhostPay supergraph for the charge benchmarks on real PostgreSQL (DATABASE_URL) with the
 * router's rate limits in Redis (REDIS_URL): the four subgraphs, the router (JWT verification,
 * per-key rate limits read from auth.api_keys, metrics, the analytics emitter) and the REST
 * bridge, each on its own loopback port. BENCH_DATA_DIR holds the embedded analytics store,
 * BENCH_SECRETS_DIR the generated secrets.
 *
 * BENCH_STACK_SERVICES (comma list of auth,cards,charges,analytics,router,bridge; default all)
 * picks the services this process hosts: all of them is the `npm start` shape (one process);
 * one each is the deployment shape (a process per service). BENCH_STACK_URLS (JSON, service →
 * base URL) says where the services hosted elsewhere listen.
 */
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { analyticsConfigSchema } from '@ghostpay/analytics';
import { authConfigSchema, createAuthService } from '@ghostpay/auth';
import { cardsConfigSchema, createCardsService } from '@ghostpay/cards';
import { chargesConfigSchema, createChargesService } from '@ghostpay/charges';
import { createDatabase } from '@ghostpay/db';
import { bridgeConfigSchema, createBridge, manifestPath } from '@ghostpay/openapi-bridge';
import { createJwtVerifier, createLogger, createSecretsProvider, loadConfig, type z } from '@ghostpay/platform';
import {
  createAnalyticsEmitter,
  createApiKeyLookup,
  createRouter,
  rateLimitRedisOptions,
  routerConfigSchema,
  toAnalyticsRequestEvent,
} from '@ghostpay/router';
import { Redis } from 'ioredis';
import { serveChild } from '../child-process.ts';
import { startAnalytics } from './start-analytics.ts';

const closers: Array<() => Promise<unknown>> = [];
/** Closes what has been started, last first, each once (a stop, or a start that failed midway). */
const closeAll = async () => {
  for (let closeOne = closers.pop(); closeOne; closeOne = closers.pop()) await closeOne().catch(() => {});
};
const child = serveChild({ onStop: closeAll });

try {
  const dataDir = process.env.BENCH_DATA_DIR as string;
  // Shared by every stack of one run: the signing keys in the database are encrypted under signing-kek.
  const secretsDir = process.env.BENCH_SECRETS_DIR ?? join(dataDir, 'secrets');
  mkdirSync(secretsDir, { recursive: true, mode: 0o700 });
  // Fresh random secrets per run, in the formats the services' READMEs define.
  const secretValues: Record<string, string> = {
    'signing-kek': `bench1:${randomBytes(32).toString('base64')}`,
    'pan-encryption-keys': `bench1:${randomBytes(32).toString('base64')}`,
    'cvc-key': randomBytes(32).toString('base64'),
    'pan-fingerprint-key': randomBytes(32).toString('base64'),
    'analytics-ingest-token': randomBytes(32).toString('base64url'),
  };
  for (const [name, value] of Object.entries(secretValues)) {
    if (!existsSync(join(secretsDir, name))) writeFileSync(join(secretsDir, name), `${value}\n`, { mode: 0o600 });
  }

  const env: Record<string, string | undefined> = {
    ...process.env,
    GHOSTPAY_DATA_DIR: dataDir,
    SECRETS_DIR: secretsDir,
    LOG_LEVEL: 'warn',
  };
  const config = <S extends z.ZodType>(service: string, schema: S) => loadConfig(service, schema, env);
  const logger = createLogger({ service: 'bench-stack', level: 'warn' });
  const serviceLogger = (service: string) => logger.child({ service });
  const host = '127.0.0.1';

  const all = ['auth', 'cards', 'charges', 'analytics', 'router', 'bridge'];
  const hosted = new Set((process.env.BENCH_STACK_SERVICES ?? all.join(',')).split(',').map((name) => name.trim()));
  const elsewhere = JSON.parse(process.env.BENCH_STACK_URLS ?? '{}') as Record<string, string>;
  const urls: Record<string, string> = {};
  const urlOf = (service: string) => {
    const url = urls[service] ?? elsewhere[service];
    if (!url) throw new Error(`no URL for ${service}: host it here or pass it in BENCH_STACK_URLS`);
    return url;
  };

  const secrets = createSecretsProvider({ dir: secretsDir, env });
  closers.push(async () => secrets.close());
  const needsDatabase = ['auth', 'cards', 'charges', 'router'].some((service) => hosted.has(service));
  const database = needsDatabase
    ? await createDatabase({ url: env.DATABASE_URL, applicationName: `ghostpay-bench-${[...hosted].join('-')}` })
    : undefined;
  if (database) closers.push(() => database.close());
  const db = () => {
    if (!database) throw new Error('no database in this process');
    return database;
  };

  const authConfig = config('auth', authConfigSchema);
  if (hosted.has('auth')) {
    const auth = createAuthService({ database: db(), secrets, logger: serviceLogger('auth'), config: authConfig });
    await auth.start(0, host);
    closers.push(() => auth.close());
    urls.auth = auth.url;
  }
  const verifier = createJwtVerifier({
    jwksUrl: `${urlOf('auth')}/.well-known/jwks.json`,
    issuer: authConfig.JWT_ISSUER,
    audience: authConfig.JWT_AUDIENCE,
  });

  if (hosted.has('cards')) {
    const cards = createCardsService({
      database: db(),
      secrets,
      verifier,
      logger: serviceLogger('cards'),
      config: config('cards', cardsConfigSchema),
    });
    await cards.start(0, host);
    closers.push(() => cards.close());
    urls.cards = cards.url;
  }
  if (hosted.has('charges')) {
    const charges = createChargesService({
      database: db(),
      verifier,
      logger: serviceLogger('charges'),
      // Settlement is a background batch job (100 charges per second by default), not part of the
      // authorize path the DB limit measures; it would load PostgreSQL during the charge runs only.
      // BENCH_SETTLEMENT=true keeps it on (see RESULTS.md for its measured effect).
      config: { ...config('charges', chargesConfigSchema), SETTLEMENT_ENABLED: process.env.BENCH_SETTLEMENT === 'true' },
    });
    await charges.start(0, host);
    closers.push(() => charges.close());
    urls.charges = charges.url;
  }
  if (hosted.has('analytics')) {
    // Closes its store itself when it does not start (the embedded store's directory lock).
    const analytics = await startAnalytics(
      { config: config('analytics', analyticsConfigSchema), secrets, verifier, logger: serviceLogger('analytics') },
      0,
      host,
    );
    closers.push(() => analytics.close());
    urls.analytics = analytics.url;
  }

  if (hosted.has('router')) {
    const emitter = createAnalyticsEmitter({
      url: `${urlOf('analytics')}/internal/events`,
      token: () => secrets.get('analytics-ingest-token'),
      logger: serviceLogger('analytics-emitter'),
    });
    const routerConfig = config('router', routerConfigSchema);
    // The production client (no offline queue: wait until it is connected, as main.ts does).
    const redis = new Redis(env.REDIS_URL as string, rateLimitRedisOptions(routerConfig.ROUTER_REDIS_TIMEOUT_MS));
    closers.push(async () => redis.disconnect());
    await once(redis, 'ready');
    const router = createRouter({
      config: {
        ...routerConfig,
        ROUTER_PQ_MANIFESTS: [manifestPath],
        ROUTER_SUBGRAPH_URLS: {
          auth: `${urlOf('auth')}/graphql`,
          cards: `${urlOf('cards')}/graphql`,
          charges: `${urlOf('charges')}/graphql`,
          analytics: `${urlOf('analytics')}/graphql`,
        },
      },
      logger: serviceLogger('router'),
      verifier,
      redis,
      apiKeyLookup: createApiKeyLookup(db()),
      onRequestEvent: (event) => emitter.emit(toAnalyticsRequestEvent(event)),
      onClose: () => emitter.close(),
    });
    await router.start(0, host);
    closers.push(() => router.close());
    urls.router = router.url;
  }

  if (hosted.has('bridge')) {
    const bridge = createBridge({
      config: { ...config('openapi-bridge', bridgeConfigSchema), ROUTER_URL: `${urlOf('router')}/graphql` },
      logger: serviceLogger('openapi-bridge'),
    });
    urls.bridge = await bridge.start(0, host);
    closers.push(() => bridge.close());
  }

  child.ready(urls);
} catch (error) {
  // What did start (servers, the pool, Redis, the secrets watcher) is stopped before the exit.
  await closeAll();
  child.fail(error);
}
