import { readFileSync } from 'node:fs';
import type { DatabaseHandle } from '@ghostpay/db';
import {
  createMetricsRegistry,
  createPeriodicJob,
  createSubgraphService,
  type JwtVerifier,
  type PeriodicJob,
  type ServerTlsConfig,
  type SubgraphService,
  serviceServerOptionsFrom,
} from '@ghostpay/platform';
import { parse } from 'graphql';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { createChargeEventBus } from './charge-event-bus.ts';
import { createChargeLookups } from './charge-queries.ts';
import { createChargesMetrics } from './charges-metrics.ts';
import type { ChargesConfig } from './config.ts';
import { pruneIdempotencyKeys } from './idempotency.ts';
import { type ChargesContext, createLoaders, createResolvers } from './resolvers.ts';
import { settleAllDue, settlementBacklog } from './settle-charges.ts';
import { createSubscriptionServer } from './subscription-server.ts';

export const chargesTypeDefs = parse(readFileSync(new URL('./schema.graphql', import.meta.url), 'utf8'));

export interface ChargesServiceDeps {
  /** HTTPS, and mTLS when it names a client CA (platform `serverTlsConfigSchema`). @default plain HTTP */
  tls?: ServerTlsConfig;
  database: DatabaseHandle;
  logger: Logger;
  verifier: JwtVerifier;
  /** Parsed with `chargesConfigSchema` (defaults apply to anything unset). */
  config: ChargesConfig;
  /** @default a new registry labelled service="charges" */
  registry?: Registry;
}

export interface ChargesService extends SubgraphService<ChargesContext> {
  readonly registry: Registry;
  /** The settlement worker; started by `start()` when SETTLEMENT_ENABLED, stopped by `close()`. */
  readonly settlement: PeriodicJob;
  /** Deletes idempotency keys older than IDEMPOTENCY_RETENTION_HOURS; same lifecycle. */
  readonly idempotencyPruner: PeriodicJob;
  /** Live chargeUpdated subscriptions in this process. */
  readonly activeSubscriptions: number;
}

/** Builds the charges subgraph (HTTP + graphql-ws on /graphql) and its workers, without listening. */
export function createChargesService(deps: ChargesServiceDeps): ChargesService {
  const { database, config } = deps;
  const { logger } = deps;
  const registry = deps.registry ?? createMetricsRegistry('charges');
  const metrics = createChargesMetrics(registry);
  const bus = createChargeEventBus(database, logger);
  const lookups = createChargeLookups(database.db);
  const resolvers = createResolvers({ db: database.db, idempotencyWaitMs: config.IDEMPOTENCY_WAIT_MS, metrics, bus, lookups });

  // Charges this process found it cannot settle (settleAllDue): each is logged once and passed over.
  const unsettleable = new Map<string, unknown>();
  const settlement = createPeriodicJob({
    name: 'settlement',
    intervalMs: config.SETTLEMENT_INTERVAL_MS,
    logger,
    run: async () => {
      try {
        const settled = await settleAllDue(database.db, {
          delayMs: config.SETTLEMENT_DELAY_MS,
          batchSize: config.SETTLEMENT_BATCH_SIZE,
          unsettleable,
          onUnsettleable: (chargeId, error) =>
            logger.error({ err: error, chargeId }, 'charge cannot be settled; passed over until restart (run ledger:check)'),
        });
        if (settled > 0) logger.info({ settled }, 'settled charges');
        return settled;
      } finally {
        // What is left, after a pass that settled or one that failed (a stalled settlement is the
        // case to see): the alert rules page when the oldest due charge keeps waiting.
        metrics.settlementPassedOver.set(unsettleable.size);
        await settlementBacklog(database.db, config.SETTLEMENT_DELAY_MS).then(
          (backlog) => {
            metrics.settlementDue.set(backlog.due);
            metrics.settlementOldestDueSeconds.set(backlog.oldestDueSeconds);
          },
          (error: unknown) => logger.warn({ err: error }, 'settlement backlog could not be read; its gauges keep their last values'),
        );
      }
    },
  });
  const idempotencyPruner = createPeriodicJob({
    name: 'idempotency-prune',
    intervalMs: config.IDEMPOTENCY_PRUNE_INTERVAL_MS,
    logger,
    run: () => pruneIdempotencyKeys(database.db, config.IDEMPOTENCY_RETENTION_HOURS),
  });

  let subscriptions: ReturnType<typeof createSubscriptionServer> | undefined;
  const service = createSubgraphService<ChargesContext>({
    tls: deps.tls,
    name: 'charges',
    typeDefs: chargesTypeDefs,
    resolvers,
    verifier: deps.verifier,
    logger,
    registry,
    // MAX_CONNECTIONS: subscription WebSockets hold their connection for their whole life: they count.
    ...serviceServerOptionsFrom(config),
    extendContext: (base) => ({ ...base, ...createLoaders(lookups, base) }),
    readiness: [{ name: 'database', check: () => database.ping() }],
    onUpgrade: (req, socket, head) => {
      if (subscriptions) subscriptions.onUpgrade(req, socket, head);
      else socket.destroy();
    },
    onClose: () => bus.close(),
    jobs: config.SETTLEMENT_ENABLED ? [settlement, idempotencyPruner] : [],
  });
  subscriptions = createSubscriptionServer({
    schema: service.schema,
    lookups,
    verifier: deps.verifier,
    logger,
    keepAliveMs: config.SUBSCRIPTION_KEEPALIVE_MS,
    connectionInitTimeoutMs: config.SUBSCRIPTION_INIT_TIMEOUT_MS,
    maxSubscriptionsPerSocket: config.SUBSCRIPTION_MAX_PER_SOCKET,
  });

  const closeHttp = service.close.bind(service);
  let closing: Promise<void> | undefined;
  // Object.assign would copy a getter's current value, so the live count is defined apart.
  Object.defineProperty(service, 'activeSubscriptions', { get: () => bus.subscriberCount, enumerable: true });
  return Object.assign(service as typeof service & { readonly activeSubscriptions: number }, {
    registry,
    settlement,
    idempotencyPruner,
    close() {
      closing ??= (async () => {
        // Upgraded sockets are not HTTP requests: close them first or the server never drains
        // (the platform's close then stops the jobs and drains).
        await subscriptions?.close();
        await closeHttp();
      })();
      return closing;
    },
  });
}
