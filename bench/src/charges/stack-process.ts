/**
 * The GhostPay supergraph for the charge benchmarks, in one process like `npm start`, but on
 * real PostgreSQL (DATABASE_URL) and with the router's rate limits in Redis (REDIS_URL):
 * the four subgraphs, the router (JWT verification, per-key rate limits read from
 * auth.api_keys, metrics, the analytics emitter) and the REST bridge, each on its own
 * loopback port. BENCH_DATA_DIR holds the embedded analytics store, BENCH_SECRETS_DIR the generated secrets.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { analyticsConfigSchema, createAnalyticsService, openAnalyticsStore } from '@ghostpay/analytics';
import { authConfigSchema, createAuthService } from '@ghostpay/auth';
import { cardsConfigSchema, createCardsService } from '@ghostpay/cards';
import { chargesConfigSchema, createChargesService } from '@ghostpay/charges';
import { createDatabase } from '@ghostpay/db';
import { bridgeConfigSchema, createBridge, manifestPath } from '@ghostpay/openapi-bridge';
import { createJwtVerifier, createLogger, createSecretsProvider, loadConfig, type z } from '@ghostpay/platform';
import {
  createAnalyticsEmitter,
  createApiKeyRateLimits,
  createRouter,
  routerConfigSchema,
  toAnalyticsRequestEvent,
} from '@ghostpay/router';
import { Redis } from 'ioredis';
import { serveChild } from '../child-process.ts';

const closers: Array<() => Promise<unknown>> = [];
const child = serveChild({
  onStop: async () => {
    for (const closeOne of closers.reverse()) await closeOne().catch(() => {});
  },
});

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

  const secrets = createSecretsProvider({ dir: secretsDir, env });
  closers.push(async () => secrets.close());
  const database = await createDatabase({ url: env.DATABASE_URL, applicationName: 'ghostpay-bench-stack' });
  closers.push(() => database.close());

  const authConfig = config('auth', authConfigSchema);
  const auth = createAuthService({ database, secrets, logger: serviceLogger('auth'), config: authConfig });
  await auth.start(0, host);
  closers.push(() => auth.close());
  const verifier = createJwtVerifier({
    jwksUrl: `${auth.url}/.well-known/jwks.json`,
    issuer: authConfig.JWT_ISSUER,
    audience: authConfig.JWT_AUDIENCE,
  });

  const cards = createCardsService({
    database,
    secrets,
    verifier,
    logger: serviceLogger('cards'),
    config: config('cards', cardsConfigSchema),
  });
  await cards.start(0, host);
  closers.push(() => cards.close());
  const charges = createChargesService({
    database,
    verifier,
    logger: serviceLogger('charges'),
    config: config('charges', chargesConfigSchema),
  });
  await charges.start(0, host);
  closers.push(() => charges.close());

  const analyticsConfig = config('analytics', analyticsConfigSchema);
  const analyticsStore = await openAnalyticsStore(analyticsConfig);
  const analytics = createAnalyticsService({
    store: analyticsStore,
    secrets,
    verifier,
    logger: serviceLogger('analytics'),
    config: analyticsConfig,
  });
  await analytics.store.ensureIndexes();
  await analytics.start(0, host);
  closers.push(() => analytics.close());

  const emitter = createAnalyticsEmitter({
    url: `${analytics.url}/internal/events`,
    token: () => secrets.get('analytics-ingest-token'),
    logger: serviceLogger('analytics-emitter'),
  });
  const redis = new Redis(env.REDIS_URL as string, { enableOfflineQueue: true, maxRetriesPerRequest: 1, commandTimeout: 1000 });
  closers.push(async () => redis.disconnect());
  const routerConfig = config('router', routerConfigSchema);
  const router = createRouter({
    config: {
      ...routerConfig,
      ROUTER_PQ_MANIFESTS: [manifestPath],
      ROUTER_SUBGRAPH_URLS: {
        auth: `${auth.url}/graphql`,
        cards: `${cards.url}/graphql`,
        charges: `${charges.url}/graphql`,
        analytics: `${analytics.url}/graphql`,
      },
    },
    logger: serviceLogger('router'),
    verifier,
    redis,
    rateLimitOverrides: createApiKeyRateLimits(database),
    onRequestEvent: (event) => emitter.emit(toAnalyticsRequestEvent(event)),
    onClose: () => emitter.close(),
  });
  await router.start(0, host);
  closers.push(() => router.close());

  const bridge = createBridge({
    config: { ...config('openapi-bridge', bridgeConfigSchema), ROUTER_URL: `${router.url}/graphql` },
    logger: serviceLogger('openapi-bridge'),
  });
  const bridgeUrl = await bridge.start(0, host);
  closers.push(() => bridge.close());

  child.ready({ router: router.url, bridge: bridgeUrl, auth: auth.url, analytics: analytics.url });
} catch (error) {
  child.fail(error);
}
