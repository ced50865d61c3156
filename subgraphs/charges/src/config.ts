import { baseConfigSchema, env, jwtVerifierEnv, z } from '@ghostpay/platform';

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
  SETTLEMENT_DELAY_MS: z.coerce.number().int().min(0).default(5_000),
  SETTLEMENT_INTERVAL_MS: env.positiveInt(1_000),
  SETTLEMENT_BATCH_SIZE: env.positiveInt(100),
  SETTLEMENT_ENABLED: env.boolean(true),
  /** Idempotency keys are kept at least this long, then pruned. */
  IDEMPOTENCY_RETENTION_HOURS: env.positiveInt(24),
  IDEMPOTENCY_PRUNE_INTERVAL_MS: env.positiveInt(600_000),
  /** How long a duplicate request waits for the in-flight original before IDEMPOTENCY_KEY_IN_USE. */
  IDEMPOTENCY_WAIT_MS: env.positiveInt(5_000),
});

export type ChargesConfig = z.infer<typeof chargesConfigSchema>;
