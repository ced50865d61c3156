import { type DestinationStream, type Logger, pino, stdSerializers } from 'pino';
import { traceLogFields } from './telemetry.ts';

export type { Logger };

/** What a censored value becomes in a log line. */
export const redactedValue = '[redacted]';

/**
 * Keys whose values are censored in every log line, in any case and at any depth, in arrays too
 * (`Authorization`, `x-api-key`, `input.card.pan`, `headers['Set-Cookie']`, `users[0].password`).
 * Card data and credentials are never logged; this is a second line of defence behind not passing
 * them to the logger at all. `pan`, `cvc`/`cvv` and `variables` (GraphQL variable values) are
 * whole keys, so `span` is kept; the credential words are key endings, so `accessToken`,
 * `client_secret`, `newPassword` and `X-Api-Key` are censored but `apiKeyId` and `keyPrefix`,
 * which operators need, are not.
 */
const sensitiveKey =
  /^(?:pan|cv[cv]2?|variables)$|(?:authorization|cookie|token|secret(?:[-_ ]?hash)?|passw(?:or)?d(?:[-_ ]?hash)?|api[-_ ]?key|private[-_ ]?key|card[-_ ]?number)$/i;

/** True when a value logged under `key` is censored. */
export function isSensitiveKey(key: string): boolean {
  return sensitiveKey.test(key);
}

/**
 * Returns `value` with the value of every sensitive key censored, at any depth, and every
 * `Error` in it serialised by `serializeError`. Copy on write: the caller's objects are never
 * changed, and when nothing matches (nearly every line) `value` itself comes back, having cost
 * one regular-expression test per key. Objects with a `toJSON` (dates, buffers) are left to it.
 */
export function redactSensitive<T>(value: T): T {
  return redactValue(value, new Map()) as T;
}

/**
 * `redactSensitive` for a log line's object and a child logger's bindings, leaving the error at
 * the top-level `err` to the `err` serializer (which pino runs after the formatters).
 */
function redactLogObject<T extends Record<string, unknown>>(object: T): T {
  return redactValue(object, new Map(), 'err') as T;
}

const inProgress = Symbol('in progress');

/**
 * `visited` maps each object already walked to what replaces it, so an object reached twice is
 * walked once (a large shared graph stays linear), and one reached from inside itself becomes
 * `[Circular]`: a copy must not point back at the original, which still holds what was censored.
 */
function redactValue(value: unknown, visited: Map<object, unknown>, serializedLater?: string): unknown {
  if (value === null || typeof value !== 'object') return value;
  if (value instanceof Error) return serializeError(value);
  if (ArrayBuffer.isView(value) || typeof (value as { toJSON?: unknown }).toJSON === 'function') return value;
  const known = visited.get(value);
  if (known !== undefined) return known === inProgress ? '[Circular]' : known;
  visited.set(value, inProgress);
  let result: unknown = value;
  if (Array.isArray(value)) {
    let copy: unknown[] | undefined;
    for (let i = 0; i < value.length; i++) {
      const item = value[i];
      const redacted = redactValue(item, visited);
      if (redacted !== item) {
        copy ??= value.slice();
        copy[i] = redacted;
      }
    }
    result = copy ?? value;
  } else {
    const record = value as Record<string, unknown>;
    let copy: Record<string, unknown> | undefined;
    for (const key in record) {
      if (key === serializedLater || !Object.hasOwn(record, key)) continue;
      const item = record[key];
      const redacted = item !== undefined && sensitiveKey.test(key) ? redactedValue : redactValue(item, visited);
      if (redacted !== item) {
        copy ??= { ...record };
        copy[key] = redacted;
      }
    }
    result = copy ?? value;
  }
  visited.set(value, result);
  return result;
}

/**
 * Bound values inside error text. A failed drizzle query (drizzle-orm 0.45 `DrizzleQueryError`)
 * says `Failed query: <sql>\nparams: <every bound value>`, and PostgreSQL quotes the offending
 * value in some messages and details: emails, idempotency keys, API-key secret hashes, free-text
 * descriptions. The SQL, the constraint and the error code stay: they are what an operator needs.
 */
const boundValuePatterns: Array<[RegExp, string]> = [
  // drizzle: everything from `params:` on.
  [/(^|\s)params:[\s\S]*$/, '$1params: [redacted]'],
  // PostgreSQL details: `Key (email)=(a@b.test) already exists.`, `Failing row contains (…).`
  [/\)=\([\s\S]*\)/, ')=([redacted])'],
  [/(Failing row contains )\([\s\S]*\)/, '$1([redacted])'],
  // PostgreSQL messages: `invalid input syntax for type uuid: "…"`, `value "…" is out of range …`
  [
    /(invalid input (?:syntax|value) for [^:\n]*: |malformed [a-z ]+ literal: |(?:field )?value out of range: |value )"[^\n]*"/g,
    '$1"[redacted]"',
  ],
  // PostgreSQL `where`: `unnamed portal parameter $1 = '…'`
  [/(parameter \$\d+ = )'(?:[^']|'')*'/g, "$1'[redacted]'"],
];

/** `text` (an error message, detail or stack) without the bound values it quotes. */
export function scrubErrorText(text: string): string {
  let scrubbed = text;
  for (const [pattern, replacement] of boundValuePatterns) scrubbed = scrubbed.replace(pattern, replacement);
  return scrubbed;
}

/** Keys under which drivers and query builders attach the bound values to an error: dropped. */
const boundValueKeys = new Set(['params', 'parameters', 'bindings']);

type ErrorLike = Error & Record<string, unknown>;

function isErrorLike(value: unknown): value is ErrorLike {
  return typeof value === 'object' && value !== null && typeof (value as { message?: unknown }).message === 'string';
}

/**
 * A stand-in for `error` (its constructor, so the same type name) whose message, stack and string
 * properties are scrubbed, without the bound-value properties, and whose cause, nested errors and
 * aggregated errors are stand-ins too. `error` itself is not changed. The stand-in inherits from
 * `Error.prototype`, not from `error`'s class, so no class accessor runs against it.
 */
function scrubbedError(error: ErrorLike, done: Map<object, ErrorLike>): ErrorLike {
  const existing = done.get(error);
  if (existing) return existing;
  const copy = Object.create(Error.prototype) as ErrorLike;
  done.set(error, copy);
  const message = scrubErrorText(error.message);
  let stack = typeof error.stack === 'string' ? error.stack : undefined;
  if (stack !== undefined) {
    // The stack starts with the message: replace it whole, so a bound value holding newlines
    // (or text shaped like a stack frame) cannot outlast the scrubbing of its first line.
    const at = error.message ? stack.indexOf(error.message) : -1;
    stack = at === -1 ? scrubErrorText(stack) : `${stack.slice(0, at)}${message}${stack.slice(at + error.message.length)}`;
  }
  const hidden = (key: string, value: unknown) =>
    Object.defineProperty(copy, key, { value, writable: true, configurable: true, enumerable: false });
  hidden('constructor', error.constructor);
  hidden('name', error.name);
  hidden('message', message);
  hidden('stack', stack);
  const cause = typeof error.cause === 'function' ? (error.cause as () => unknown)() : error.cause;
  if (cause !== undefined) hidden('cause', isErrorLike(cause) ? scrubbedError(cause, done) : redactSensitive(cause));
  const errors = error.errors;
  if (Array.isArray(errors))
    hidden(
      'errors',
      errors.map((item: unknown) => (isErrorLike(item) ? scrubbedError(item, done) : item)),
    );
  // Every enumerable key, inherited ones too, as pino's serializer copies them.
  for (const key in error) {
    if (boundValueKeys.has(key) || key === 'cause' || key === 'errors') continue;
    const value = error[key];
    copy[key] = typeof value === 'string' ? scrubErrorText(value) : isErrorLike(value) ? scrubbedError(value, done) : value;
  }
  return copy;
}

/**
 * The `err` serializer of every service's logger: pino's standard one (type, message and stack
 * with those of the causes appended, enumerable properties) over a scrubbed stand-in, so bound
 * query values never reach a log line, then with sensitive keys censored. A string is scrubbed.
 */
export function serializeError(error: unknown): unknown {
  if (typeof error === 'string') return scrubErrorText(error);
  if (!isErrorLike(error)) return redactSensitive(error);
  return redactSensitive(stdSerializers.err(scrubbedError(error, new Map())));
}

export interface LoggerOptions {
  service: string;
  /** @default 'info' */
  level?: string;
  /** Where lines go; stdout by default. Tests pass a stream to capture lines. */
  destination?: DestinationStream;
}

export function createLogger({ service, level = 'info', destination }: LoggerOptions): Logger {
  const logger = pino(
    {
      name: service,
      level,
      base: { service },
      serializers: { err: serializeError },
      formatters: {
        log: redactLogObject,
        bindings: redactLogObject,
      },
      hooks: {
        // Given an error and no message, pino logs the error's own message as `msg`
        // (`logger.error(error)`, `logger.error({ err })`): scrub that too.
        logMethod(args, method) {
          if (args.length === 1) {
            const [first] = args as unknown[];
            const fields = (typeof first === 'object' && first !== null ? first : {}) as { err?: unknown; msg?: unknown };
            const error = first instanceof Error ? first : fields.msg === undefined ? fields.err : undefined;
            if (isErrorLike(error)) return method.call(this, first as object, scrubErrorText(error.message));
          }
          return method.apply(this, args);
        },
      },
      timestamp: pino.stdTimeFunctions.isoTime,
      // `trace_id` / `span_id` of the active span (nothing outside a trace or with tracing off),
      // so a log line leads to its trace and back.
      mixin: traceLogFields,
    },
    destination,
  );
  // pino applies `formatters.bindings` to the base bindings only, not to a child's
  // (`logger.child({ headers })`): censor those on the way in. Children inherit this method.
  const child = logger.child;
  logger.child = function redactedChild(this: Logger, bindings, options) {
    return child.call(this, redactLogObject(bindings), options);
  } as Logger['child'];
  return logger;
}
