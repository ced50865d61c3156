/**
 * The router's composition root: telemetry → config → verifier → (Redis, database for per-key
 * limits, analytics emitter) → createRouter → listen → stop on signals.
 */
import { startTelemetry } from '@ghostpay/platform/telemetry';

// Tracing first, so the modules it instruments (http, pg) load after it: the rest is imported below.
const telemetry = startTelemetry({ serviceName: 'router' });
const { createDatabase } = await import('@ghostpay/db');
const {
  createJwtVerifier,
  jwtVerifierOptionsFrom,
  createLogger,
  createMetricsRegistry,
  createSecretsProvider,
  exitOnSignals,
  loadConfig,
  loadServerTlsConfig,
  logEffectiveConfig,
} = await import('@ghostpay/platform');
const { Redis } = await import('ioredis');
const { createAnalyticsEmitter, tlsFetch } = await import('./analytics-emitter.ts');
const { createApiKeyLookup } = await import('./api-keys.ts');
const { routerConfigSchema, subgraphClientTls } = await import('./config.ts');
const { toAnalyticsRequestEvent } = await import('./request-events.ts');
const { rateLimitRedisOptions } = await import('./rate-limiter.ts');
const { createRouter } = await import('./router.ts');
const { routerSubscriptionsConfigSchema, routerSubscriptionsSettings } = await import('./subscriptions/index.ts');

// @apollo/gateway would otherwise export usage telemetry to Apollo; this router never phones home.
process.env.APOLLO_TELEMETRY_DISABLED = 'true';

const config = loadConfig('router', routerConfigSchema);
const tls = loadServerTlsConfig('router');
const logger = createLogger({ service: 'router', level: config.LOG_LEVEL });
const subscriptionsConfig = loadConfig('router', routerSubscriptionsConfigSchema);
logEffectiveConfig(logger, routerConfigSchema.extend(routerSubscriptionsConfigSchema.shape), { ...config, ...subscriptionsConfig });
const secrets = createSecretsProvider({ dir: subscriptionsConfig.SECRETS_DIR, logger });
const verifier = createJwtVerifier({ ...jwtVerifierOptionsFrom(config), logger });
const registry = createMetricsRegistry('router');

// Commands fail fast while Redis is unreachable, so the limiter falls back locally instead of queueing requests.
// Redis is deliberately not a readiness check: the router keeps serving (fail open) without it.
const redis = config.REDIS_URL ? new Redis(config.REDIS_URL, rateLimitRedisOptions(config.ROUTER_REDIS_TIMEOUT_MS)) : undefined;
redis?.on('error', (error) => logger.debug({ err: error.message }, 'redis error'));
if (redis) {
  // Start with shared counters when Redis is there; when it is not, start anyway on local limits.
  const ready = await Promise.race([
    new Promise<boolean>((done) => redis.once('ready', () => done(true))),
    new Promise<boolean>((done) => setTimeout(() => done(false), 5_000).unref()),
  ]);
  if (!ready) logger.warn('redis not reachable at start: rate limits are local until it is');
}
// Per-key limits come from auth.api_keys when the router can reach the database.
const database = config.DATABASE_URL
  ? await createDatabase({ url: config.DATABASE_URL, poolSize: 2, preparedStatements: config.DATABASE_PREPARED_STATEMENTS })
  : undefined;
// Request events go to analytics' ingest with the shared token (secret `analytics-ingest-token`).
const emitter = config.ROUTER_ANALYTICS_URL
  ? createAnalyticsEmitter({
      url: config.ROUTER_ANALYTICS_URL,
      token: () => secrets.get('analytics-ingest-token'),
      registry,
      logger: logger.child({ component: 'analytics-emitter' }),
      // Analytics is a subgraph: under mTLS it demands the certificate the router presents to all of them.
      fetch: tlsFetch(subgraphClientTls(config)),
    })
  : undefined;

const router = createRouter({
  config,
  logger,
  verifier,
  registry,
  redis,
  apiKeyLookup: database ? createApiKeyLookup(database) : undefined,
  subscriptions: routerSubscriptionsSettings(subscriptionsConfig, config.ROUTER_SUBGRAPH_URLS, secrets),
  onRequestEvent: emitter ? (event) => emitter.emit(toAnalyticsRequestEvent(event)) : undefined,
  tls,
  onClose: async () => {
    await emitter?.close();
    secrets.close();
    redis?.disconnect();
    await database?.close();
  },
});
await router.start(config.ROUTER_PORT, config.HOST);
exitOnSignals(logger, async () => {
  await router.close();
  await telemetry.shutdown();
});
