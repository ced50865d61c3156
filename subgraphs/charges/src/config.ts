import { baseConfigSchema, env, jwtVerifierEnv, maxTimerMs, z } from '@ghostpay/platform';

/**
 * The most charges one settlement transaction may take. The batch's rows stay locked until it
 * commits, and a refund of one of them waits for that (at most IDEMPOTENCY_WAIT_MS, then it fails
 * SERVICE_UNAVAILABLE); a pass runs up to 20 batches, so throughput needs no larger batch. A typo
 * (1000000) would otherwise lock a million rows in one transaction.
 */
export const maxSettlementBatchSize = 1_000;

/** `IDEMPOTENCY_WAIT_MS` when unset: the schema's default, for tools that must wait as the service does. */
export const DEFAULT_IDEMPOTENCY_WAIT_MS = 2_000;

/** Env of the charges service; see the README's table. */
export const chargesConfigSchema = baseConfigSchema.extend({
  CHARGES_PORT: env.port(4003),
  /** postgres:// URL; unset → PGlite under GHOSTPAY_DATA_DIR. */
  DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, 'must be a postgres:// URL')
    .optional(),
  /** Prepared statements per PostgreSQL connection (0: none); see the README. */
  DATABASE_PREPARED_STATEMENTS: env.optionalCount(),
  GHOSTPAY_DATA_DIR: z.string().min(1).default('.data'),
  ...jwtVerifierEnv,
  /** How long a charge stays AUTHORIZED before the worker settles it. */
  SETTLEMENT_DELAY_MS: env.wholeNumber({ max: maxTimerMs }).default(5_000),
  SETTLEMENT_INTERVAL_MS: env.milliseconds(1_000),
  /** Charges per settlement transaction, 1 to {@link maxSettlementBatchSize}. */
  SETTLEMENT_BATCH_SIZE: env
    .wholeNumber({
      min: 1,
      max: maxSettlementBatchSize,
      message: `must be a whole number from 1 to ${maxSettlementBatchSize} (charges locked by one settlement transaction)`,
    })
    .default(100),
  SETTLEMENT_ENABLED: env.boolean(true),
  /** Idempotency keys are kept at least this long, then pruned. */
  IDEMPOTENCY_RETENTION_HOURS: env.positiveInt(24),
  IDEMPOTENCY_PRUNE_INTERVAL_MS: env.milliseconds(600_000),
  /**
   * How long a duplicate request waits for the in-flight original before IDEMPOTENCY_KEY_IN_USE,
   * and any lock wait after the claim before SERVICE_UNAVAILABLE. A request may wait twice (for
   * its key, then for its card or charge row), so twice this must stay under the router's timeout
   * for charges (ROUTER_SUBGRAPH_TIMEOUT_MS, 5000): past it the router answers 503 first, the
   * client never sees these codes, the request may still commit after, and each such timeout
   * counts towards opening the router's circuit breaker for every charges call.
   */
  IDEMPOTENCY_WAIT_MS: env.milliseconds(DEFAULT_IDEMPOTENCY_WAIT_MS),
  /** WebSocket ping interval; a peer silent one interval after a ping is terminated. */
  SUBSCRIPTION_KEEPALIVE_MS: env.milliseconds(12_000),
  /** A WebSocket that sends no `connection_init` this long after opening is closed (4408). */
  SUBSCRIPTION_INIT_TIMEOUT_MS: env.milliseconds(3_000),
  /**
   * Subscriptions one WebSocket may hold; at or above the router's
   * ROUTER_SUBSCRIPTION_UPSTREAM_SOCKET_CAPACITY (500), which the router bounds to 1..1000: a cap
   * below 500 needs the router's capacity lowered with it.
   */
  SUBSCRIPTION_MAX_PER_SOCKET: env.positiveInt(1_000),
});

export type ChargesConfig = z.infer<typeof chargesConfigSchema>;
