import { baseConfigSchema, env, jwtVerifierEnv, z } from '@ghostpay/platform';

/** Environment of the analytics service; see README for the table. */
export const analyticsConfigSchema = baseConfigSchema.extend({
  ANALYTICS_PORT: env.port(4004),
  /** MongoDB connection string; unset → the embedded store under GHOSTPAY_DATA_DIR. */
  MONGODB_URL: z.string().min(1).optional(),
  /** Database name on MongoDB. */
  MONGODB_DATABASE: z.string().min(1).default('ghostpay_analytics'),
  GHOSTPAY_DATA_DIR: z.string().min(1).default('.data'),
  /** How long request logs are kept (TTL); usage and performance aggregates are kept. */
  ANALYTICS_LOG_RETENTION_DAYS: z.coerce.number().positive().max(3650).default(30),
  /** Largest batch accepted at ingest, in events. */
  ANALYTICS_INGEST_MAX_EVENTS: env.positiveInt(1000),
  /** Largest ingest body, in bytes. */
  ANALYTICS_INGEST_MAX_BYTES: env.positiveInt(4 * 1024 * 1024),
  ...jwtVerifierEnv,
  SECRETS_DIR: z.string().min(1).optional(),
});

export type AnalyticsConfig = z.infer<typeof analyticsConfigSchema>;
