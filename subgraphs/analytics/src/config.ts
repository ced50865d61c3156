import { baseConfigSchema, env, jwtVerifierEnv, z } from '@ghostpay/platform';
import { aggregateRetentionMarginDays, defaultBatchLeaseMs } from './analytics-store.ts';
import { defaultMaxDocuments } from './store/embedded-store.ts';
import { defaultMongoTimeouts, type MongoTimeouts, mongoWriteBoundMs } from './store/mongo-store.ts';

/**
 * The time the batch lease leaves for a write to be applied after its owner's deadline (the
 * second half of the lease): every store's write bound must be shorter.
 */
export const leaseMarginMs = defaultBatchLeaseMs / 2;

const validDays = (value: number | undefined): value is number => value !== undefined && value > 0 && value <= 3650;

/**
 * A number of days in plain decimal, a fraction allowed (`0.5`), more than 0 and at most 3650.
 * `z.coerce.number()` read a blank value as 0 (refused only by luck, by `positive`) and took
 * `1e1` and `0x10`.
 */
const days = () =>
  z
    .string()
    .regex(/^\d+(?:\.\d+)?$/, 'must be a number of days in plain decimal (30, 0.5), more than 0 and at most 3650')
    .transform(Number)
    .refine(validDays, 'must be a number of days in plain decimal (30, 0.5), more than 0 and at most 3650');

/** Environment of the analytics service; see README for the table. */
export const analyticsConfigSchema = baseConfigSchema
  .extend({
    ANALYTICS_PORT: env.port(4004),
    /** MongoDB connection string; unset → the embedded store under GHOSTPAY_DATA_DIR. */
    MONGODB_URL: z
      .string()
      .regex(/^mongodb(?:\+srv)?:\/\/[^/?#\s]+/, 'must be a MongoDB connection string: mongodb://host[:port]/… or mongodb+srv://host/…')
      .optional(),
    /** Database name on MongoDB. */
    MONGODB_DATABASE: z.string().min(1).default('ghostpay_analytics'),
    /** Per-stage bounds of every MongoDB operation (`MongoTimeouts`). */
    MONGODB_SERVER_SELECTION_TIMEOUT_MS: env.milliseconds(defaultMongoTimeouts.serverSelectionTimeoutMs),
    MONGODB_CONNECT_TIMEOUT_MS: env.milliseconds(defaultMongoTimeouts.connectTimeoutMs),
    MONGODB_WAIT_QUEUE_TIMEOUT_MS: env.milliseconds(defaultMongoTimeouts.waitQueueTimeoutMs),
    MONGODB_MAX_TIME_MS: env.milliseconds(defaultMongoTimeouts.maxTimeMs),
    MONGODB_SOCKET_TIMEOUT_MS: env.milliseconds(defaultMongoTimeouts.socketTimeoutMs),
    GHOSTPAY_DATA_DIR: z.string().min(1).default('.data'),
    /** Longest an embedded-store write may take (a stalled disk): it then fails having changed nothing. */
    ANALYTICS_EMBEDDED_WRITE_TIMEOUT_MS: env.milliseconds(10_000),
    /** Documents an embedded-store collection holds at most (memory): past it new ones are refused. */
    ANALYTICS_EMBEDDED_MAX_DOCUMENTS: env.positiveInt(defaultMaxDocuments),
    /** How long request logs are kept (TTL), in days (`days`). */
    ANALYTICS_LOG_RETENTION_DAYS: days().default(30),
    /**
     * How long usage and performance aggregates are kept, in days (plain decimal, as the logs'
     * retention); at least a day longer than ANALYTICS_LOG_RETENTION_DAYS. Unset: 93 days, or a
     * day more than the logs' retention when that is longer (`aggregateRetentionDaysFor`).
     */
    ANALYTICS_AGGREGATE_RETENTION_DAYS: days().optional(),
    /** Largest batch accepted at ingest, in events. */
    ANALYTICS_INGEST_MAX_EVENTS: env.positiveInt(1000),
    /** Largest ingest body, in bytes. */
    ANALYTICS_INGEST_MAX_BYTES: env.positiveInt(4 * 1024 * 1024),
    ...jwtVerifierEnv,
    SECRETS_DIR: env.filePath().optional(),
  })
  .superRefine((config, ctx) => {
    const [logDays, aggregateDays] = [config.ANALYTICS_LOG_RETENTION_DAYS, config.ANALYTICS_AGGREGATE_RETENTION_DAYS];
    // Compared only when both are valid: a refused value reaches here too (as 0 for a blank one).
    if (validDays(logDays) && validDays(aggregateDays) && aggregateDays < logDays + aggregateRetentionMarginDays) {
      ctx.addIssue({
        code: 'custom',
        path: ['ANALYTICS_AGGREGATE_RETENTION_DAYS'],
        message: `must be at least ${aggregateRetentionMarginDays} day longer than ANALYTICS_LOG_RETENTION_DAYS (${config.ANALYTICS_LOG_RETENTION_DAYS}): recovery counts a batch from its logs`,
      });
    }
    const timeouts = mongoTimeoutsFrom(config);
    if (timeouts.socketTimeoutMs <= timeouts.maxTimeMs) {
      ctx.addIssue({
        code: 'custom',
        path: ['MONGODB_SOCKET_TIMEOUT_MS'],
        message: `must be longer than MONGODB_MAX_TIME_MS (${timeouts.maxTimeMs}), so the server's own time-out answers first`,
      });
    }
    const bound = mongoWriteBoundMs(timeouts);
    if (bound >= leaseMarginMs) {
      ctx.addIssue({
        code: 'custom',
        path: ['MONGODB_SOCKET_TIMEOUT_MS'],
        message: `the MongoDB timeouts add up to ${bound} ms (server selection + wait queue + connect + socket + max time): a write could be applied after its batch's lease margin (${leaseMarginMs} ms); lower them`,
      });
    }
    if (config.ANALYTICS_EMBEDDED_WRITE_TIMEOUT_MS >= leaseMarginMs) {
      ctx.addIssue({
        code: 'custom',
        path: ['ANALYTICS_EMBEDDED_WRITE_TIMEOUT_MS'],
        message: `must be shorter than the batch lease margin (${leaseMarginMs} ms)`,
      });
    }
  });

export type AnalyticsConfig = z.infer<typeof analyticsConfigSchema>;

/**
 * The MongoDB per-stage bounds the configuration names; one it leaves out (a caller passing part
 * of the configuration) is the default.
 */
export function mongoTimeoutsFrom(config: {
  MONGODB_SERVER_SELECTION_TIMEOUT_MS?: number;
  MONGODB_CONNECT_TIMEOUT_MS?: number;
  MONGODB_WAIT_QUEUE_TIMEOUT_MS?: number;
  MONGODB_MAX_TIME_MS?: number;
  MONGODB_SOCKET_TIMEOUT_MS?: number;
}): MongoTimeouts {
  const d = defaultMongoTimeouts;
  return {
    serverSelectionTimeoutMs: config.MONGODB_SERVER_SELECTION_TIMEOUT_MS ?? d.serverSelectionTimeoutMs,
    connectTimeoutMs: config.MONGODB_CONNECT_TIMEOUT_MS ?? d.connectTimeoutMs,
    waitQueueTimeoutMs: config.MONGODB_WAIT_QUEUE_TIMEOUT_MS ?? d.waitQueueTimeoutMs,
    maxTimeMs: config.MONGODB_MAX_TIME_MS ?? d.maxTimeMs,
    socketTimeoutMs: config.MONGODB_SOCKET_TIMEOUT_MS ?? d.socketTimeoutMs,
  };
}
