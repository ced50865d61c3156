import { baseConfigSchema, env, jwtVerifierEnv, z } from '@ghostpay/platform';

/** The largest value a GraphQL `Int` can carry; `Card.amount` is an Int, so the cap cannot exceed it. */
export const graphqlIntMax = 2_147_483_647;

/**
 * Environment of the cards service. Every variable has a default suited to development;
 * production sets DATABASE_URL, JWKS_URL and SECRETS_DIR.
 */
export const cardsConfigSchema = baseConfigSchema
  .extend({
    CARDS_PORT: env.port(4002),
    /** PostgreSQL URL; unset → PGlite under GHOSTPAY_DATA_DIR. */
    DATABASE_URL: env.optionalUrl(),
    /** Prepared statements per PostgreSQL connection (0: none); see the README. */
    DATABASE_PREPARED_STATEMENTS: env.optionalCount(),
    GHOSTPAY_DATA_DIR: z.string().min(1).default('.data'),
    ...jwtVerifierEnv,
    SECRETS_DIR: env.filePath().optional(),
    /** Largest card amount in minor units. @default 100000000 (1,000,000.00 in a 2-decimal currency) */
    CARD_MAX_AMOUNT: env.wholeNumber({ min: 1, max: graphqlIntMax }).default(100_000_000),
    /** Shortest lifetime a card may be issued with. @default 60 */
    CARD_MIN_EXPIRES_IN_SECONDS: env.positiveInt(60),
    /** Longest lifetime a card may be issued with. @default 63072000 (two years) */
    CARD_MAX_EXPIRES_IN_SECONDS: env.wholeNumber({ min: 1, max: graphqlIntMax }).default(63_072_000),
    /** Lifetime when `expiresInSeconds` is absent. @default 2592000 (30 days) */
    CARD_DEFAULT_EXPIRES_IN_SECONDS: env.positiveInt(2_592_000),
    /** The 6-digit BIN PANs are issued under; must be a test BIN. @default 400000 (Visa test range) */
    CARD_BIN: z
      .string()
      .regex(/^4\d{5}$/, 'a 6-digit Visa BIN (starts with 4)')
      .default('400000'),
    /** Run housekeeping (expire cards, prune reveal counters and old idempotency keys) while serving. @default true */
    CARDS_HOUSEKEEPING_ENABLED: env.boolean(true),
    /** Pause between housekeeping passes. @default 60000 */
    CARDS_HOUSEKEEPING_INTERVAL_MS: env.milliseconds(60_000),
    /** Issuance idempotency keys are kept at least this long, then pruned. @default 24 */
    IDEMPOTENCY_RETENTION_HOURS: env.positiveInt(24),
    /**
     * Days a card's encrypted PAN is kept after the card was used, canceled or expired; then the
     * housekeeping erases it (0: at its next pass). Only an ACTIVE card reveals. @default 30
     */
    CARD_PAN_RETENTION_DAYS: env.wholeNumber({ max: 3650 }).default(30),
  })
  .superRefine((config, ctx) => {
    if (config.CARD_MIN_EXPIRES_IN_SECONDS > config.CARD_MAX_EXPIRES_IN_SECONDS) {
      ctx.addIssue({ code: 'custom', path: ['CARD_MIN_EXPIRES_IN_SECONDS'], message: 'must not exceed CARD_MAX_EXPIRES_IN_SECONDS' });
    }
    const d = config.CARD_DEFAULT_EXPIRES_IN_SECONDS;
    if (d < config.CARD_MIN_EXPIRES_IN_SECONDS || d > config.CARD_MAX_EXPIRES_IN_SECONDS) {
      ctx.addIssue({ code: 'custom', path: ['CARD_DEFAULT_EXPIRES_IN_SECONDS'], message: 'must lie within the min and max bounds' });
    }
  });

export type CardsConfig = z.infer<typeof cardsConfigSchema>;
