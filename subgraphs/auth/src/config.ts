import { baseConfigSchema, defaultJwksCooldownMs, env, jwksFetchTimeoutMs, z } from '@ghostpay/platform';

/**
 * How long a `next` signing key must have been published before a rotation may make it sign:
 * long enough for every verifier to learn it. A verifier holding a key set fetched before the
 * key was published refetches on its unknown `kid`, but at most once per cooldown (30 s,
 * counted from when its last fetch ended, which may be up to the fetch timeout, 5 s, after it
 * read the set); and the JWKS response may be served from an HTTP cache for up to its max-age.
 * So: `JWKS_MAX_AGE_SECONDS` + 30 + 5 seconds (95 by default).
 */
export function rotationSpacingSeconds(jwksMaxAgeSeconds: number): number {
  return jwksMaxAgeSeconds + Math.ceil(defaultJwksCooldownMs / 1000) + Math.ceil(jwksFetchTimeoutMs / 1000);
}

/**
 * The shortest scheduled rotation interval. Rotating a signing key more often buys nothing (a
 * retired key stays published for a token lifetime anyway) and fills the JWKS with retired keys.
 */
export const minRotationIntervalSeconds = 3_600;

/**
 * The auth service's environment. Every value has a development default except the
 * `signing-kek` secret, which comes from the secrets provider (never from this schema).
 */
export const authConfigSchema = baseConfigSchema
  .extend({
    AUTH_PORT: env.port(4001),
    /** Unset → PGlite in GHOSTPAY_DATA_DIR. */
    DATABASE_URL: env.optionalUrl(),
    /** Prepared statements per PostgreSQL connection (0: none); see the README. */
    DATABASE_PREPARED_STATEMENTS: env.optionalCount(),
    GHOSTPAY_DATA_DIR: z.string().min(1).default('.data'),
    SECRETS_DIR: env.filePath().optional(),
    JWT_ISSUER: z.string().min(1).default('ghostpay-auth'),
    JWT_AUDIENCE: z.string().min(1).default('ghostpay-api'),
    /** Algorithm of newly generated signing keys; existing keys keep theirs. */
    JWT_ALGORITHM: z.enum(['RS256', 'ES256', 'EdDSA']).default('RS256'),
    /** Lifetime of an access token. Also bounds how long a retired key stays published. */
    ACCESS_TOKEN_TTL_SECONDS: env.wholeNumber({ min: 30, max: 86_400 }).default(900),
    /** Clock skew verifiers tolerate; a retired key stays published this much longer. */
    JWT_CLOCK_SKEW_SECONDS: env.wholeNumber({ max: 600 }).default(30),
    /**
     * Scheduled rotation: rotate when the current key is this old. 0 = only on demand; else at
     * least `minRotationIntervalSeconds` and `rotationSpacingSeconds(JWKS_MAX_AGE_SECONDS)`.
     */
    SIGNING_KEY_ROTATION_INTERVAL_SECONDS: env.wholeNumber().default(0),
    /** `Cache-Control: max-age` of the JWKS response. */
    JWKS_MAX_AGE_SECONDS: env.wholeNumber({ max: 3600 }).default(60),
    /** Failed exchanges allowed per API key prefix from one client address within the window. */
    FAILED_EXCHANGE_LIMIT_PER_KEY: env.positiveInt(5),
    /**
     * Failed exchanges per API key prefix from every address within the window after which the
     * key is under attack: each address may then fail on it once per window. Never locks the key.
     */
    FAILED_EXCHANGE_LIMIT_PER_KEY_ALL_ADDRESSES: env.positiveInt(20),
    /** Failed exchanges allowed per client address within the window. */
    FAILED_EXCHANGE_LIMIT_PER_ADDRESS: env.positiveInt(20),
    FAILED_EXCHANGE_WINDOW_SECONDS: env.positiveInt(300),
    /**
     * Redis shared by the replicas for the failed-exchange limits (the router's). Unset → each
     * process limits by itself, in memory (the embedded default).
     */
    REDIS_URL: env.optionalUrl(),
    /** Unrevoked API keys a user may create for themselves (admins creating keys for others are not capped). */
    MAX_API_KEYS_PER_USER: env.positiveInt(10),
    /**
     * Reverse proxies in front of this service whose `x-forwarded-for` entries are trusted
     * (1 when only the router is in front). 0 = use the socket address.
     */
    TRUSTED_PROXY_HOPS: env.wholeNumber({ max: 10 }).default(0),
  })
  .superRefine((config, ctx) => {
    const interval = config.SIGNING_KEY_ROTATION_INTERVAL_SECONDS;
    if (interval === 0) return;
    const spacing = rotationSpacingSeconds(config.JWKS_MAX_AGE_SECONDS);
    if (interval < minRotationIntervalSeconds) {
      ctx.addIssue({
        code: 'custom',
        path: ['SIGNING_KEY_ROTATION_INTERVAL_SECONDS'],
        message: `must be 0 (off) or at least ${minRotationIntervalSeconds} (1 hour): more frequent rotation only fills the JWKS with retired keys`,
      });
    } else if (interval < spacing) {
      ctx.addIssue({
        code: 'custom',
        path: ['SIGNING_KEY_ROTATION_INTERVAL_SECONDS'],
        message: `must be 0 (off) or at least ${spacing} with JWKS_MAX_AGE_SECONDS=${config.JWKS_MAX_AGE_SECONDS} (that + 35 s): verifiers may not know a key published more recently`,
      });
    }
  });

export type AuthConfig = z.infer<typeof authConfigSchema>;
