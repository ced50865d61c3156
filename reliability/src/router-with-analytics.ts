/**
 * The router as its own process, exactly as `router/src/main.ts` composes it, plus the
 * analytics emitter, without subscriptions (not exercised here) (main.ts has no emitter yet; `stack/src/start-stack.ts` wires one the same
 * way). The suite needs request events flowing to prove analytics outages never touch
 * payments and that no PAN reaches an event. Env: the router's, plus ANALYTICS_INGEST_URL.
 */
import { createDatabase } from '@ghostpay/db';
import {
  createJwtVerifier,
  createLogger,
  createMetricsRegistry,
  createSecretsProvider,
  exitOnSignals,
  loadConfig,
  type RequestEvent,
} from '@ghostpay/platform';
import {
  createAnalyticsEmitter,
  createApiKeyRateLimits,
  createRouter,
  type RouterRequestEvent,
  routerConfigSchema,
} from '@ghostpay/router';
import { Redis } from 'ioredis';

process.env.APOLLO_TELEMETRY_DISABLED ??= 'true';

const config = loadConfig('router', routerConfigSchema);
const logger = createLogger({ service: 'router', level: config.LOG_LEVEL });
const secrets = createSecretsProvider({ dir: process.env.SECRETS_DIR });
const verifier = createJwtVerifier({ jwksUrl: config.JWKS_URL, issuer: config.JWT_ISSUER, audience: config.JWT_AUDIENCE });
const redis = config.REDIS_URL
  ? new Redis(config.REDIS_URL, {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: config.ROUTER_REDIS_TIMEOUT_MS,
      retryStrategy: (attempt) => Math.min(attempt * 200, 2_000),
    })
  : undefined;
redis?.on('error', (error) => logger.debug({ err: error.message }, 'redis error'));
if (redis) {
  await Promise.race([
    new Promise<boolean>((done) => redis.once('ready', () => done(true))),
    new Promise<boolean>((done) => setTimeout(() => done(false), 5_000).unref()),
  ]);
}
const database = config.DATABASE_URL ? await createDatabase({ url: config.DATABASE_URL, poolSize: 2 }) : undefined;
const registry = createMetricsRegistry('router');
const ingestUrl = process.env.ANALYTICS_INGEST_URL;
const emitter = ingestUrl
  ? createAnalyticsEmitter({
      url: ingestUrl,
      token: () => secrets.get('analytics-ingest-token'),
      logger: logger.child({ component: 'analytics-emitter' }),
      registry,
      flushIntervalMs: 200,
      retryMaxMs: 1_000,
    })
  : undefined;
const operationTypes = new Set(['query', 'mutation', 'subscription']);
const toRequestEvent = (event: RouterRequestEvent): RequestEvent => ({
  timestamp: event.receivedAt,
  requestId: event.requestId,
  traceId: event.traceId ?? null,
  operationName: event.operationName ?? null,
  operationType: operationTypes.has(event.operationType ?? '') ? (event.operationType as RequestEvent['operationType']) : null,
  apiKeyId: event.apiKeyId ?? null,
  userId: event.userId ?? null,
  role: event.role ?? null,
  httpStatus: event.httpStatus,
  errorCodes: event.errorCodes,
  latencyMs: event.latencyMs,
  subgraphTimings: event.subgraphTimings.map(({ subgraph, ms }) => ({ subgraph, ms })),
});

const router = createRouter({
  config,
  logger,
  verifier,
  redis,
  registry,
  rateLimitOverrides: database ? createApiKeyRateLimits(database) : undefined,
  ...(emitter ? { onRequestEvent: (event: RouterRequestEvent) => emitter.emit(toRequestEvent(event)) } : {}),
  onClose: async () => {
    await emitter?.close();
    secrets.close();
    redis?.disconnect();
    await database?.close();
  },
});
await router.start(config.ROUTER_PORT, config.HOST);
exitOnSignals(logger, () => router.close());
