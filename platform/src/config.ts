import { z } from 'zod';

export { z };

/** The result of checking env against a schema: either typed config or one line per problem. */
export type ConfigResult<T> = { ok: true; config: T } | { ok: false; problems: string[] };

/** Validates `env` against `schema`, collecting every problem as `NAME: message`. */
export function parseConfig<S extends z.ZodType>(
  schema: S,
  env: Record<string, string | undefined> = process.env,
): ConfigResult<z.infer<S>> {
  const result = schema.safeParse(env);
  if (result.success) return { ok: true, config: result.data };
  const problems = result.error.issues.map((issue) => {
    const name = issue.path.join('.') || '(env)';
    const value = env[String(issue.path[0])];
    const got = value === undefined ? 'is not set' : `got ${JSON.stringify(redactIfSecret(name, value))}`;
    return `${name}: ${issue.message} (${got})`;
  });
  return { ok: false, problems };
}

function redactIfSecret(name: string, value: string): string {
  return /SECRET|KEY|TOKEN|PASSWORD|URL/i.test(name) ? '[redacted]' : value;
}

/**
 * Parses config or stops the process: prints one readable line per problem to stderr
 * and exits with status 1, without a stack trace.
 */
export function loadConfig<S extends z.ZodType>(
  service: string,
  schema: S,
  env: Record<string, string | undefined> = process.env,
): z.infer<S> {
  const result = parseConfig(schema, env);
  if (result.ok) return result.config;
  process.stderr.write(`${service}: invalid configuration\n`);
  for (const line of result.problems) process.stderr.write(`  ${line}\n`);
  process.exit(1);
}

/** Reusable field schemas for env vars. */
export const env = {
  port: (fallback: number) => z.coerce.number().int().min(0).max(65535).default(fallback),
  host: (fallback = '127.0.0.1') => z.string().min(1).default(fallback),
  url: () => z.url(),
  optionalUrl: () => z.url().optional(),
  positiveInt: (fallback: number) => z.coerce.number().int().positive().default(fallback),
  /** A whole number ≥ 0 written in digits, or unset (the consumer's own default applies); '' is refused, not read as 0. */
  optionalCount: () => z.string().regex(/^\d+$/, 'must be a whole number ≥ 0').transform(Number).optional(),
  boolean: (fallback: boolean) =>
    z
      .enum(['true', 'false', '1', '0', 'yes', 'no'])
      .default(fallback ? 'true' : 'false')
      .transform((v) => v === 'true' || v === '1' || v === 'yes'),
  logLevel: () => z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
};

/**
 * Env of every service that verifies access tokens (router, cards, charges, analytics): what
 * the tokens must say, where the auth service publishes its keys, and how long a JWKS outage is
 * bridged with the last key set fetched. `jwtVerifierOptionsFrom` turns it into
 * `createJwtVerifier` options.
 */
export const jwtVerifierEnv = {
  JWT_ISSUER: z.string().min(1).default('ghostpay-auth'),
  JWT_AUDIENCE: z.string().min(1).default('ghostpay-api'),
  JWKS_URL: env.url().default('http://127.0.0.1:4001/.well-known/jwks.json'),
  /** Seconds past the JWKS max age (10 min) the last key set fetched still verifies while the JWKS cannot be fetched; 0 = none. */
  JWKS_STALE_GRACE_SECONDS: z.coerce.number().int().min(0).max(86_400).default(3_600),
  /** PEM client certificate and key presented when fetching the JWKS (auth demanding client certificates); both or neither. */
  JWKS_TLS_CERT_FILE: z.string().min(1).optional(),
  JWKS_TLS_KEY_FILE: z.string().min(1).optional(),
  /** PEM CA bundle the JWKS server's certificate must chain to (besides Node's own and NODE_EXTRA_CA_CERTS). */
  JWKS_TLS_CA_FILE: z.string().min(1).optional(),
};

export function jwtVerifierOptionsFrom(config: {
  JWT_ISSUER: string;
  JWT_AUDIENCE: string;
  JWKS_URL: string;
  JWKS_STALE_GRACE_SECONDS: number;
  JWKS_TLS_CERT_FILE?: string;
  JWKS_TLS_KEY_FILE?: string;
  JWKS_TLS_CA_FILE?: string;
}): {
  jwksUrl: string;
  issuer: string;
  audience: string;
  jwksStaleGraceMs: number;
  jwksTls?: { caFile?: string; certFile?: string; keyFile?: string };
} {
  const { JWKS_TLS_CA_FILE: caFile, JWKS_TLS_CERT_FILE: certFile, JWKS_TLS_KEY_FILE: keyFile } = config;
  return {
    jwksUrl: config.JWKS_URL,
    issuer: config.JWT_ISSUER,
    audience: config.JWT_AUDIENCE,
    jwksStaleGraceMs: config.JWKS_STALE_GRACE_SECONDS * 1000,
    ...(caFile || certFile || keyFile ? { jwksTls: { caFile, certFile, keyFile } } : {}),
  };
}

/** Env shared by every service. */
export const baseConfigSchema = z.object({
  NODE_ENV: z.enum(['development', 'test', 'production']).default('development'),
  LOG_LEVEL: env.logLevel(),
  HOST: env.host(),
  SHUTDOWN_TIMEOUT_MS: env.positiveInt(10_000),
});
