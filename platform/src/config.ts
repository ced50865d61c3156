import { z } from 'zod';
import { withoutCredentialsInUrls } from './url-credentials.ts';

export { z };

/** The result of checking env against a schema: either typed config or one line per problem. */
export type ConfigResult<T> = { ok: true; config: T } | { ok: false; problems: string[] };

/**
 * What `parseConfig` and `redactConfig` may show of a variable's value, declared in the schema:
 * `env.secret()` (never shown) or `env.shown()` (shown whatever its name says). See `isSecretConfigField`.
 */
const configFieldKind = z.registry<{ secret: boolean }>();

function declareKind<T extends z.ZodType>(schema: T, secret: boolean): T {
  (configFieldKind as z.core.$ZodRegistry<{ secret: boolean }, z.ZodType>).add(schema, { secret });
  return schema;
}

/**
 * Names that say a variable holds a credential. Only a fallback for a string variable whose
 * schema declares nothing (`env.secret()` / `env.shown()`): a variable holding a number, a
 * boolean or one of a closed set of words (`SIGNING_KEY_ROTATION_INTERVAL_SECONDS`,
 * `FAILED_EXCHANGE_LIMIT_PER_KEY`) is not a credential, whatever its name.
 */
const secretName = /SECRET|PASSW|PASSPHRASE|TOKEN|KEY|CREDENTIAL|PRIVATE|PEPPER|SALT|(?:^|_)PIN(?:_|$)|AUTH/i;

/** Value kinds that cannot hold a credential: a number, a boolean, a closed set of words. */
const valueFreeKinds = new Set(['number', 'bigint', 'boolean', 'enum', 'literal']);

type SchemaDef = { type: string; shape?: Record<string, z.ZodType>; innerType?: z.ZodType; in?: z.ZodType; out?: z.ZodType };
const defOf = (schema: z.ZodType) => (schema as unknown as { _zod: { def: SchemaDef } })._zod.def;

/** The object schema `schema` validates with (through pipes), if any. */
function objectShape(schema: z.ZodType): Record<string, z.ZodType> | undefined {
  for (let current: z.ZodType | undefined = schema, hops = 0; current && hops < 16; hops++) {
    const def = defOf(current);
    if (def.type === 'object') return def.shape;
    current = def.type === 'pipe' ? def.in : def.innerType;
  }
  return undefined;
}

/**
 * Whether the value of variable `name` of `schema` is a secret, never to be shown: declared with
 * `env.secret()` (or `env.shown()` for not), else a string variable whose name says credential
 * (`secretName`). Wrappers (`.optional()`, `.default()`, a `.transform()` pipe) are looked
 * through. A variable the schema does not know is shown only if its name says nothing.
 */
export function isSecretConfigField(schema: z.ZodType, name: string): boolean {
  const field = objectShape(schema)?.[name];
  let kind: string | undefined;
  const pending: z.ZodType[] = field ? [field] : [];
  for (let hops = 0; pending.length > 0 && hops < 32; hops++) {
    const current = pending.shift() as z.ZodType;
    const declared = configFieldKind.get(current);
    if (declared) return declared.secret;
    const def = defOf(current);
    if (def.type === 'pipe') {
      if (def.in) pending.push(def.in);
    } else if (def.innerType) {
      pending.push(def.innerType);
    } else {
      kind ??= def.type;
    }
  }
  if (kind && valueFreeKinds.has(kind)) return false;
  return secretName.test(name);
}

/** How a variable's value is shown in a problem or a config dump: a secret not at all, anything else without URL credentials. */
function shownValue(schema: z.ZodType, name: string, value: string): string {
  return isSecretConfigField(schema, name) ? '[redacted]' : withoutCredentialsInUrls(value);
}

/**
 * A problem's message, which a schema's own check may have written with the value in it
 * (`expected name=url pairs, got "auth=http://u:pw@…"`): without URL credentials, and for a
 * secret without any 6 characters in a row of the value.
 */
function shownMessage(schema: z.ZodType, name: string, value: string | undefined, message: string): string {
  if (value !== undefined && value !== '' && isSecretConfigField(schema, name)) {
    const window = Math.min(6, value.length);
    for (let i = 0; i + window <= value.length; i++) {
      if (message.includes(value.slice(i, i + window))) return 'invalid value (the message quoted it)';
    }
  }
  return withoutCredentialsInUrls(message);
}

/** Validates `env` against `schema`, collecting every problem as `NAME: message`. Secrets are never shown (`isSecretConfigField`). */
export function parseConfig<S extends z.ZodType>(
  schema: S,
  env: Record<string, string | undefined> = process.env,
): ConfigResult<z.infer<S>> {
  const result = schema.safeParse(env);
  if (result.success) return { ok: true, config: result.data };
  const problems = result.error.issues.map((issue) => {
    const name = issue.path.join('.') || '(env)';
    const variable = issue.path.length > 0 ? String(issue.path[0]) : undefined;
    const value = variable === undefined ? undefined : env[variable];
    const message = variable === undefined ? withoutCredentialsInUrls(issue.message) : shownMessage(schema, variable, value, issue.message);
    if (variable === undefined) return `${name}: ${message}`;
    const got = value === undefined ? 'is not set' : `got ${JSON.stringify(shownValue(schema, variable, value))}`;
    return `${name}: ${message} (${got})`;
  });
  return { ok: false, problems };
}

/**
 * `config` as it may be shown (a start-up line, a dump): each secret variable's value
 * `[redacted]`, every other string without URL credentials.
 */
export function redactConfig<T extends Record<string, unknown>>(schema: z.ZodType, config: T): Record<keyof T, unknown> {
  const shown: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(config)) {
    if (isSecretConfigField(schema, name)) shown[name] = value === undefined ? undefined : '[redacted]';
    else shown[name] = typeof value === 'string' ? withoutCredentialsInUrls(value) : redactNested(value);
  }
  return shown as Record<keyof T, unknown>;
}

/**
 * Logs `config` at start-up as it may be shown (`redactConfig`), in one `info` line
 * (`effective configuration`, the values under `config`), so an operator sees what a replica
 * runs with, defaults included. One line in a service's composition root, after `createLogger`:
 * `logEffectiveConfig(logger, cardsConfigSchema, config)`. The logger censors the line again
 * (sensitive keys, URL credentials, PANs).
 */
export function logEffectiveConfig(
  logger: { info(object: object, message: string): void },
  schema: z.ZodType,
  config: Record<string, unknown>,
): void {
  logger.info({ config: redactConfig(schema, config) }, 'effective configuration');
}

/** Strings inside a parsed value (a `name=url` map) without URL credentials. */
function redactNested(value: unknown): unknown {
  if (typeof value === 'string') return withoutCredentialsInUrls(value);
  if (Array.isArray(value)) return value.map(redactNested);
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, redactNested(v)]));
  }
  return value;
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

/**
 * A whole number written in plain decimal digits, `min` to `max` (@default 0 to
 * `Number.MAX_SAFE_INTEGER`). Anything else is refused with a problem naming the variable: ''
 * (`z.coerce.number()` read a blank `PORT=` as 0, a random port, and a blank grace as none),
 * `1e3`, `0x10`, `1.5`, `-1`, ` 8`. Its value is shown in problems whatever the variable's name
 * (a number is not a credential). Add `.default(n)` or `.optional()` after.
 */
function wholeNumber(options: { min?: number; max?: number; message?: string } = {}) {
  const { min = 0, max = Number.MAX_SAFE_INTEGER } = options;
  const bounds = max === Number.MAX_SAFE_INTEGER ? `≥ ${min}` : `from ${min} to ${max}`;
  const message = options.message ?? `must be a whole number ${bounds}, in digits`;
  return declareKind(
    z
      .string()
      .regex(/^\d+$/, message)
      .transform(Number)
      .refine((value) => Number.isSafeInteger(value) && value >= min && value <= max, message),
    false,
  );
}

/**
 * The longest delay a millisecond variable may hold: 2^31 - 1, the most a Node timer waits (a
 * longer `setTimeout` or `setInterval` fires after 1 ms instead, with a TimeoutOverflowWarning)
 * and the most PostgreSQL's `lock_timeout` and `statement_timeout` take. Above it a ping interval
 * would terminate every WebSocket, a timeout fire at once, a periodic job run in a tight loop:
 * refused at start instead (`env.milliseconds`).
 */
export const maxTimerMs = 2_147_483_647;

/** Reusable field schemas for env vars. */
export const env = {
  /** A whole number in digits (see `wholeNumber`): `env.wholeNumber({ min: 30, max: 86_400 }).default(900)`. */
  wholeNumber,
  port: (fallback: number) => wholeNumber({ max: 65535 }).default(fallback),
  host: (fallback = '127.0.0.1') => z.string().min(1).default(fallback),
  url: () => z.url(),
  optionalUrl: () => z.url().optional(),
  positiveInt: (fallback: number) => wholeNumber({ min: 1 }).default(fallback),
  /** A delay or timeout in milliseconds, 1 to {@link maxTimerMs} (what a Node timer can wait). */
  milliseconds: (fallback: number) => wholeNumber({ min: 1, max: maxTimerMs }).default(fallback),
  /** A whole number ≥ 0 written in digits, or unset (the consumer's own default applies); '' is refused, not read as 0. */
  optionalCount: () => wholeNumber().optional(),
  boolean: (fallback: boolean) =>
    z
      .enum(['true', 'false', '1', '0', 'yes', 'no'])
      .default(fallback ? 'true' : 'false')
      .transform((v) => v === 'true' || v === '1' || v === 'yes'),
  logLevel: () => z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  /**
   * A secret (a string of at least one character unless `schema` says otherwise): its value is
   * never shown by `parseConfig` or `redactConfig`, whatever the variable's name. Wrap it
   * (`.optional()`) after, not before.
   */
  secret: <T extends z.ZodType = z.ZodString>(schema?: T): T => declareKind((schema ?? z.string().min(1)) as T, true),
  /**
   * A value that is not a secret though its name reads like one (`JWKS_TLS_KEY_FILE`, a path):
   * `parseConfig` shows it (without URL credentials).
   */
  shown: <T extends z.ZodType>(schema: T): T => declareKind(schema, false),
  /** A file path (a certificate, a key file): shown in problems whatever its name. */
  filePath: () => declareKind(z.string().min(1), false),
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
  JWKS_STALE_GRACE_SECONDS: wholeNumber({ max: 86_400 }).default(3_600),
  /** PEM client certificate and key presented when fetching the JWKS (auth demanding client certificates); both or neither. */
  JWKS_TLS_CERT_FILE: env.filePath().optional(),
  JWKS_TLS_KEY_FILE: env.filePath().optional(),
  /** PEM CA bundle the JWKS server's certificate must chain to (besides Node's own and NODE_EXTRA_CA_CERTS). */
  JWKS_TLS_CA_FILE: env.filePath().optional(),
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

/** Open connections a server holds at most unless told otherwise (`MAX_CONNECTIONS`, `createServiceServer`'s `maxConnections`). */
export const defaultMaxConnections = 10_000;

/** Env shared by every service. */
export const baseConfigSchema = z.object({
  NODE_ENV: z.enum(['development', 'test', 'production']).default('development'),
  LOG_LEVEL: env.logLevel(),
  HOST: env.host(),
  SHUTDOWN_TIMEOUT_MS: env.milliseconds(10_000),
  /**
   * Open connections the service's server holds at most (WebSockets and SSE streams included);
   * new ones past it are closed unread. Effective where the service passes it to its server.
   */
  MAX_CONNECTIONS: env.positiveInt(defaultMaxConnections),
});

/** A config parsed by `baseConfigSchema` (a service's schema extends it). */
export type BaseConfig = z.infer<typeof baseConfigSchema>;
