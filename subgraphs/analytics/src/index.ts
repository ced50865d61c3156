import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  createMetricsRegistry,
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
import { createAnalyticsStore } from './analytics-store.ts';
import { type AnalyticsConfig, mongoTimeoutsFrom } from './config.ts';
import { createIngestHandler, ingestPath } from './ingest-handler.ts';
import { type AnalyticsContext, resolvers } from './resolvers.ts';
import type { DocumentStore } from './store/document-store.ts';
import { openEmbeddedStore } from './store/embedded-store.ts';
import { connectMongoStore } from './store/mongo-store.ts';

export type { RequestEvent } from '@ghostpay/platform';
export * from './analytics-store.ts';
export * from './config.ts';
export { ingestPath, ingestTokenSecret, maxEventClockSkewMs, maxIdLength } from './ingest-handler.ts';
export * from './latency-histogram.ts';
export type * from './store/document-store.ts';
export {
  defaultMaxDocuments,
  type EmbeddedStore,
  EmbeddedStoreFullError,
  EmbeddedStoreInUseError,
  type EmbeddedStoreOptions,
  EmbeddedWriteTimeoutError,
  openEmbeddedStore,
} from './store/embedded-store.ts';
export {
  connectMongoStore,
  defaultMongoTimeouts,
  type MongoStoreOptions,
  type MongoTimeouts,
  mongoClientOptions,
  mongoWriteBoundMs,
} from './store/mongo-store.ts';

export const analyticsTypeDefs = parse(readFileSync(join(import.meta.dirname, 'schema.graphql'), 'utf8'));

export interface AnalyticsServiceDeps {
  /** HTTPS, and mTLS when it names a client CA (platform `serverTlsConfigSchema`). @default plain HTTP */
  tls?: ServerTlsConfig;
  /** MongoDB or the embedded store: see `openAnalyticsStore`. Closed with the service, or by a `start()` that fails. */
  store: DocumentStore;
  secrets: SecretsProvider;
  logger: Logger;
  verifier: JwtVerifier;
  config: Pick<AnalyticsConfig, 'ANALYTICS_LOG_RETENTION_DAYS' | 'ANALYTICS_INGEST_MAX_EVENTS' | 'ANALYTICS_INGEST_MAX_BYTES'> &
    /**
     * How long `close()` waits for requests in flight (platform's default, 10 s, when absent), and
     * the open connections the server holds at most (platform's default, 10000, when absent).
     */
    Partial<Pick<AnalyticsConfig, 'SHUTDOWN_TIMEOUT_MS' | 'MAX_CONNECTIONS' | 'ANALYTICS_AGGREGATE_RETENTION_DAYS'>>;
  /** @default a new registry labelled service="analytics" */
  registry?: Registry;
  /** How often pending batches are recovered (`AnalyticsStore.recoverPending`). @default 30000 */
  recoveryIntervalMs?: number;
  /** How often aggregates past their retention are deleted (`AnalyticsStore.expireAggregates`), also once at start. @default 600000 */
  aggregateExpiryIntervalMs?: number;
}

export interface AnalyticsService extends SubgraphService<AnalyticsContext> {
  readonly store: ReturnType<typeof createAnalyticsStore>;
}

/** The embedded store's directory under a data directory (`GHOSTPAY_DATA_DIR`): `<dataDir>/analytics`. */
export function embeddedAnalyticsDir(dataDir: string): string {
  return join(dataDir, 'analytics');
}

/**
 * MongoDB when `MONGODB_URL` is set, else the embedded store under `<GHOSTPAY_DATA_DIR>/analytics`.
 * Every operation is bounded by the configured timeouts (their defaults when a caller leaves
 * them out).
 */
export async function openAnalyticsStore(
  config: Pick<AnalyticsConfig, 'MONGODB_URL' | 'MONGODB_DATABASE' | 'GHOSTPAY_DATA_DIR'> &
    Partial<
      Pick<
        AnalyticsConfig,
        | 'MONGODB_SERVER_SELECTION_TIMEOUT_MS'
        | 'MONGODB_CONNECT_TIMEOUT_MS'
        | 'MONGODB_WAIT_QUEUE_TIMEOUT_MS'
        | 'MONGODB_MAX_TIME_MS'
        | 'MONGODB_SOCKET_TIMEOUT_MS'
        | 'ANALYTICS_EMBEDDED_WRITE_TIMEOUT_MS'
        | 'ANALYTICS_EMBEDDED_MAX_DOCUMENTS'
      >
    >,
): Promise<DocumentStore> {
  if (config.MONGODB_URL) {
    return connectMongoStore({ url: config.MONGODB_URL, database: config.MONGODB_DATABASE, timeouts: mongoTimeoutsFrom(config) });
  }
  return openEmbeddedStore({
    dir: embeddedAnalyticsDir(config.GHOSTPAY_DATA_DIR),
    writeTimeoutMs: config.ANALYTICS_EMBEDDED_WRITE_TIMEOUT_MS,
    maxDocuments: config.ANALYTICS_EMBEDDED_MAX_DOCUMENTS,
  });
}

/**
 * Builds the analytics subgraph (GraphQL on `/graphql`, ingest on `POST /internal/events`)
 * without listening; `start` creates the store's indexes before it listens.
 */
export function createAnalyticsService(deps: AnalyticsServiceDeps): AnalyticsService {
  const { logger, config } = deps;
  const registry = deps.registry ?? createMetricsRegistry('analytics');
  const store = createAnalyticsStore({
    db: deps.store.db,
    writeBoundMs: deps.store.writeBoundMs,
    logRetentionDays: config.ANALYTICS_LOG_RETENTION_DAYS,
    aggregateRetentionDays: config.ANALYTICS_AGGREGATE_RETENTION_DAYS,
    onWarning: (message) => logger.warn(message),
  });
  let recoveryTimer: NodeJS.Timeout | undefined;
  const recover = () =>
    store.recoverPending().then(
      (result) => {
        if (result.recovered + result.completed > 0) logger.info(result, 'analytics recovered pending batches');
      },
      (error: unknown) => logger.warn({ err: (error as Error).message }, 'analytics recovery of pending batches failed; tried again later'),
    );
  let expiryTimer: NodeJS.Timeout | undefined;
  const expire = () =>
    store.expireAggregates().then(
      (removed) => {
        if (removed > 0) logger.info({ removed }, 'analytics deleted aggregates past their retention');
      },
      (error: unknown) => logger.warn({ err: (error as Error).message }, 'analytics expiry of old aggregates failed; tried again later'),
    );
  let released: Promise<void> | undefined;
  /**
   * Stops recovery, lets bookkeeping under way finish (within the shutdown bound: a hung store
   * must not hold the process; whatever it leaves pending is recovered after the restart), then
   * closes the store (the embedded store's directory lock with it). Once: `close()` and a failed
   * `start()` both end here.
   */
  const release = () =>
    (released ??= (async () => {
      clearInterval(recoveryTimer);
      clearInterval(expiryTimer);
      let bound: NodeJS.Timeout | undefined;
      await Promise.race([
        store.settle(),
        new Promise<void>((resolve) => {
          bound = setTimeout(resolve, config.SHUTDOWN_TIMEOUT_MS ?? 10_000);
          bound.unref();
        }),
      ]);
      clearTimeout(bound);
      await deps.store.close();
    })());
  const service = createSubgraphService<AnalyticsContext>({
    tls: deps.tls,
    name: 'analytics',
    ...serviceServerOptionsFrom(config),
    typeDefs: analyticsTypeDefs,
    resolvers,
    verifier: deps.verifier,
    logger,
    registry,
    extendContext: (base) => ({ ...base, store }),
    readiness: [{ name: deps.store.kind, check: () => deps.store.ping() }],
    routes: {
      [ingestPath]: createIngestHandler({
        store,
        secrets: deps.secrets,
        logger: logger.child({ component: 'ingest' }),
        maxEvents: config.ANALYTICS_INGEST_MAX_EVENTS,
        maxBytes: config.ANALYTICS_INGEST_MAX_BYTES,
        maxEventAgeMs: config.ANALYTICS_LOG_RETENTION_DAYS * 86_400_000,
      }),
    },
    onClose: () => release(),
  });
  const startSubgraph = service.start;
  const closeSubgraph = service.close;
  return Object.assign(service, {
    store,
    /**
     * Creates the indexes (idempotent), recovers batches a crash left pending (those whose lease
     * has expired; the timer gets the rest), starts deleting aggregates past their retention (not
     * waited for; then every 10 minutes), then starts GraphQL and listens. When any of it
     * fails (the store refuses, the port is taken), the service is closed before the error is
     * rethrown: the store with it (an embedded store's directory lock, a MongoDB pool), the
     * recovery timer, Apollo if it started. The caller has nothing to close (`close()` then only
     * waits for that), and the data directory can be opened again at once.
     */
    async start(port: number, host?: string) {
      try {
        await store.ensureIndexes();
        await recover();
        recoveryTimer = setInterval(() => void recover(), deps.recoveryIntervalMs ?? 30_000);
        recoveryTimer.unref();
        // Off the start's path (a first pass after a long time can be long): close waits for it.
        void expire();
        expiryTimer = setInterval(() => void expire(), deps.aggregateExpiryIntervalMs ?? 600_000);
        expiryTimer.unref();
        return await startSubgraph(port, host);
      } catch (error) {
        // The subgraph service's close is safe after a failed start (Apollo stopped only if it
        // started) and ends with `release`. The start's error is the one reported.
        await closeSubgraph().catch((closeError: unknown) =>
          logger.warn({ err: (closeError as Error).message }, 'analytics service did not close cleanly after the failed start'),
        );
        throw error;
      }
    },
  });
}
