import { readFileSync } from 'node:fs';
import type { DatabaseHandle } from '@ghostpay/db';
import {
  clientAddressOf,
  createMetricsRegistry,
  createPeriodicJob,
  createSubgraphService,
  type JwtVerifier,
  type Logger,
  type Registry,
  type SecretsProvider,
  type ServerTlsConfig,
  type SubgraphService,
  serviceServerOptionsFrom,
} from '@ghostpay/platform';
import { parse } from 'graphql';
import { Redis } from 'ioredis';
import { Counter } from 'prom-client';
import { createAccessTokenIssuer } from './access-tokens.ts';
import { type AuthConfig, rotationSpacingSeconds } from './config.ts';
import {
  createFailedExchangeLimiter,
  createRedisFailedExchangeLimiter,
  type FailedExchangeLimiter,
  failedExchangeRedisOptions,
} from './failed-exchange-limiter.ts';
import { createJwksRoute, jwksPath } from './jwks-route.ts';
import { createKeyEncryption } from './key-encryption.ts';
import { createKeyRingVerifier } from './key-ring-verifier.ts';
import { createLoaders } from './loaders.ts';
import { type AuthContext, createResolvers } from './resolvers.ts';
import { createRevokedKeys, refusingRevokedKeys } from './revoked-keys.ts';
import { createSigningKeyRing, type SigningKeyRing } from './signing-key-ring.ts';
import { createTokenExchange } from './token-exchange.ts';
import { createUserLookups } from './users.ts';

export const authTypeDefs = parse(readFileSync(new URL('./schema.graphql', import.meta.url), 'utf8'));

export interface AuthServiceDeps {
  /** HTTPS, and mTLS when it names a client CA (platform `serverTlsConfigSchema`). @default plain HTTP */
  tls?: ServerTlsConfig;
  database: DatabaseHandle;
  /** Must provide `signing-kek` (see README). */
  secrets: SecretsProvider;
  logger: Logger;
  config: AuthConfig;
  /**
   * Verifies callers' bearer tokens. @default a verifier over this service's own key ring,
   * read from the database (the same keys the JWKS publishes).
   */
  verifier?: JwtVerifier;
  /** @default a fresh registry labelled `service="auth"` */
  registry?: Registry;
  /**
   * Where the replicas share the failed-exchange limits. @default a connection to
   * `config.REDIS_URL` when set (opened by `start()`, closed by `close()`), else none: each
   * process limits in memory. An injected client stays the caller's to close.
   */
  redis?: Redis;
}

/** How often each replica checks whether scheduled rotation is due. */
const rotationCheckMs = 60_000;

export interface AuthService extends SubgraphService<AuthContext> {
  readonly keyRing: SigningKeyRing;
}

/**
 * Builds the auth subgraph without listening: token exchange, users and API keys, the
 * signing key ring and its JWKS route. `start()` makes sure the ring has a current and a
 * next key before listening, and starts scheduled rotation when configured.
 */
export function createAuthService(deps: AuthServiceDeps): AuthService {
  const { database, secrets, config } = deps;
  const logger = deps.logger.child({ component: 'auth' });
  const registry = deps.registry ?? createMetricsRegistry('auth');
  const encryption = createKeyEncryption(secrets);
  const keyRing = createSigningKeyRing({
    database,
    encryption,
    algorithm: config.JWT_ALGORITHM,
    maxTokenTtlSeconds: config.ACCESS_TOKEN_TTL_SECONDS,
    clockSkewSeconds: config.JWT_CLOCK_SKEW_SECONDS,
    rotationSpacingSeconds: rotationSpacingSeconds(config.JWKS_MAX_AGE_SECONDS),
    logger,
  });
  const tokens = createAccessTokenIssuer({
    keyRing,
    issuer: config.JWT_ISSUER,
    audience: config.JWT_AUDIENCE,
    ttlSeconds: config.ACCESS_TOKEN_TTL_SECONDS,
  });
  const windowMs = config.FAILED_EXCHANGE_WINDOW_SECONDS * 1000;
  const ownRedis = !deps.redis && config.REDIS_URL ? new Redis(config.REDIS_URL, failedExchangeRedisOptions()) : undefined;
  // Connection errors are retried by ioredis and answered by the local fallback; the limiter warns about them.
  ownRedis?.on('error', (error: Error) => logger.debug({ err: error.message }, 'redis error'));
  const redis = deps.redis ?? ownRedis;
  const limiter = (name: string, limit: number): FailedExchangeLimiter =>
    redis ? createRedisFailedExchangeLimiter({ redis, name, limit, windowMs, logger }) : createFailedExchangeLimiter({ limit, windowMs });
  const exchange = createTokenExchange({
    db: database.db,
    tokens,
    byAddress: limiter('address', config.FAILED_EXCHANGE_LIMIT_PER_ADDRESS),
    byKeyFromAddress: limiter('prefix-address', config.FAILED_EXCHANGE_LIMIT_PER_KEY),
    byKey: limiter('prefix', config.FAILED_EXCHANGE_LIMIT_PER_KEY_ALL_ADDRESSES),
    logger,
    exchanges: new Counter({
      name: 'auth_token_exchanges_total',
      help: 'API key → access token exchanges by outcome (issued, rejected, rate_limited)',
      labelNames: ['outcome'] as const,
      registers: [registry],
    }),
  });
  const userLookups = createUserLookups(database.db);
  // Auth owns api_keys: it refuses a revoked key's tokens on every field itself, whatever the router in front does.
  const revokedKeys = createRevokedKeys(userLookups);
  const verifier = refusingRevokedKeys(
    deps.verifier ??
      createKeyRingVerifier(keyRing, {
        issuer: config.JWT_ISSUER,
        audience: config.JWT_AUDIENCE,
        clockToleranceSeconds: config.JWT_CLOCK_SKEW_SECONDS,
      }),
    revokedKeys,
  );

  // Scheduled rotation (SIGNING_KEY_ROTATION_INTERVAL_SECONDS > 0; at least an hour, see config.ts): every
  // replica checks once at start and then every minute, never two checks at once; the first one under the
  // ring lock to find the current key older than the interval rotates.
  const rotationSchedule =
    config.SIGNING_KEY_ROTATION_INTERVAL_SECONDS > 0
      ? createPeriodicJob({
          name: 'signing-key-rotation',
          intervalMs: rotationCheckMs,
          logger,
          run: async () => {
            const { rotated } = await keyRing.rotate({ onlyIfOlderThanSeconds: config.SIGNING_KEY_ROTATION_INTERVAL_SECONDS });
            return rotated ? 1 : 0;
          },
        })
      : undefined;
  const service = createSubgraphService<AuthContext>({
    tls: deps.tls,
    name: 'auth',
    typeDefs: authTypeDefs,
    resolvers: createResolvers({
      db: database.db,
      exchange,
      keyRing,
      maxApiKeysPerUser: config.MAX_API_KEYS_PER_USER,
      onRevoked: (apiKeyId) => revokedKeys.forget(apiKeyId),
    }),
    verifier,
    logger,
    registry,
    ...serviceServerOptionsFrom(config),
    routes: { [jwksPath]: createJwksRoute(keyRing, config.JWKS_MAX_AGE_SECONDS) },
    readiness: [
      { name: 'database', check: () => database.ping() },
      // The current private key decrypts with the KEK the secrets provider holds now.
      { name: 'signing-key', check: () => keyRing.signingKey() },
    ],
    extendContext: (base, req) => ({
      ...base,
      loaders: createLoaders(userLookups),
      clientAddress: clientAddressOf(req, config.TRUSTED_PROXY_HOPS),
    }),
    onClose: async () => {
      // Waits for a check in progress, so the database is not closed under its transaction.
      await rotationSchedule?.stop();
      ownRedis?.disconnect();
    },
  });

  const start = service.start.bind(service);
  return Object.assign(service, {
    keyRing,
    async start(port: number, host?: string) {
      encryption.check();
      await keyRing.ensure();
      if (ownRedis) await connectRedis(ownRedis, logger);
      const url = await start(port, host);
      if (rotationSchedule) {
        // A rotation that fell due while no replica ran happens now, not a minute from now.
        rotationSchedule.runOnce().catch((error: unknown) => logger.error({ err: error }, 'scheduled rotation failed'));
        rotationSchedule.start();
      }
      return url;
    },
  });
}

/**
 * Opens auth's Redis connection, waiting at most 2 s: an auth service whose Redis is down
 * still starts and limits in memory until Redis answers (ioredis keeps reconnecting).
 */
async function connectRedis(redis: Redis, logger: Logger): Promise<void> {
  const connected = redis.connect().then(
    () => true,
    () => false,
  );
  const ready = await Promise.race([connected, new Promise<boolean>((done) => setTimeout(() => done(false), 2_000).unref())]);
  if (!ready) logger.warn('redis not reachable at start: failed-exchange limits are per process until it is');
}
