import { type DestinationStream, type Logger, pino, stdSerializers } from 'pino';
import { digitRunHoldsPan, luhnValid, panDigitRun } from './request-event.ts';
import { traceLogFields } from './telemetry.ts';
import { withoutCredentialsInUrls } from './url-credentials.ts';

export type { Logger };

/** What a censored value becomes in a log line. */
export const redactedValue = '[redacted]';

/**
 * Keys whose values are censored in every log line, in any case and at any depth, in arrays too
 * (`Authorization`, `x-api-key`, `input.card.pan`, `headers['Set-Cookie']`, `users[0].password`).
 * Card data and credentials are never logged; this is a second line of defence behind not passing
 * them to the logger at all. `pan`, `cvc`/`cvv` and `variables` (GraphQL variable values) are
 * whole keys, so `span` is kept; the credential words are key endings, singular or plural, so
 * `accessToken`, `refreshTokens`, `client_secret`, `secretKey`, `signingKey`, `newPassword`,
 * `X-Api-Key`, `apiKeys`, `cookies`, `cardPan`, `idJwt`, `awsCredentials` and the cards service's
 * key material (`encryptionKeys`, `fingerprintKey`, `cvcKey`, `panKey`, `kek`) are censored but
 * `apiKeyId`, `keyPrefix`, `tokenType`, `credentialId` and `secretName`, which operators need,
 * are not. A secret's name is logged under `secretName`/`secretNames`: `secret` and `secrets` are
 * censored like any credential. Pagination tokens (`pageToken`, `nextPageToken`) are opaque
 * cursors, not credentials, and are kept. A number under a key naming a quantity of credentials
 * (`ROUTER_SUBSCRIPTION_MAX_PER_API_KEY`, `maxTokens`: `censorsUnder`) is a limit, and is kept.
 */
const sensitiveKey =
  /^(?:pans?|cv[cv]2?|variables)$|(?:authorization|cookie|(?<!page[-_ ]?)token|secret(?:[-_ ]?(?:hash|key))?|passw(?:or)?d(?:[-_ ]?hash)?|api[-_ ]?key|private[-_ ]?key|signing[-_ ]?key|(?:encryption|fingerprint|cvc|pan|master|data)[-_ ]?key|kek|card[-_ ]?(?:number|pan)|jwt|credential)s?$/i;

/**
 * Words that make a credential-named key a quantity rather than a credential: a limit per key
 * (`ROUTER_SUBSCRIPTION_MAX_PER_API_KEY`, `limitPerToken`), a most or least (`maxTokens`), a
 * count. Whole words of the key, in any case (camelCase, snake_case, kebab-case, spaces).
 */
const quantityWord = /^(?:per|max|min|limit|limits|count|num)$/;

/** Whether `key` (a sensitive one) names a quantity of credentials: one of its words is a `quantityWord`. */
function namesQuantity(key: string): boolean {
  for (const word of key.replace(/([a-z0-9])([A-Z])/g, '$1 $2').split(/[^A-Za-z0-9]+/)) {
    if (quantityWord.test(word.toLowerCase())) return true;
  }
  return false;
}

/**
 * Whether the value logged under `key` is censored: `key` is sensitive, unless the value is a
 * number and the key names a quantity (`namesQuantity`): a limit per API key is shown (still
 * censored if its digits are a PAN), while a string, an object or an array under such a key is
 * not (a map per key may be keyed by the credentials), and a number under a credential's own name
 * (`pin`, `cvc: 123`, `password: 123456`) never is.
 */
function censorsUnder(key: string, value: unknown): boolean {
  if (!sensitiveKey.test(key)) return false;
  return !((typeof value === 'number' || typeof value === 'bigint') && namesQuantity(key));
}

/**
 * True when a value logged under `key` is censored (but see `censored`: not a flag): with a
 * `value`, as the logger decides for it (a number under `MAX_PER_API_KEY` is shown).
 */
export function isSensitiveKey(key: string, value?: unknown): boolean {
  return censorsUnder(key, value);
}

/**
 * What a value under a sensitive key becomes. A boolean (`hasToken: true`), `null` or `undefined`
 * says whether there is a credential, not what it is, and is kept; anything else, numbers
 * included (a PAN or a CVC may be one), is censored.
 */
function censored(value: unknown): unknown {
  return value === undefined || value === null || typeof value === 'boolean' ? value : redactedValue;
}

/** Every digit run that may write a PAN (`panDigitRun`, as `looksSecret` reads it). */
const digitRuns = new RegExp(panDigitRun.source, 'g');
/** A UUID: an identifier, kept whatever digits it holds (one in ~100 holds a Luhn-valid run across its dashes). */
const uuidShape = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * `text` with every digit run that holds a Luhn-valid 13–19 digit PAN replaced by `[redacted]`
 * (`card [redacted] declined`); `text` itself when it holds none, which costs one regular
 * expression test. A whole-string UUID is kept: it is an id, not card data.
 */
export function withoutPans(text: string): string {
  if (text.length < 13 || !panDigitRun.test(text) || uuidShape.test(text)) return text;
  return text.replace(digitRuns, (run) => (digitRunHoldsPan(run) ? redactedValue : run));
}

/** The decimal text of an integer that may be a PAN: 14–19 digits (a sign aside). */
const panLength = /^-?(\d{14,19})$/;

/**
 * A number (or bigint) is logged as its digits: censored, as `[redacted]`, when they are a
 * Luhn-valid 14–19 digit PAN (`{ number: 4111111111111111 }`, a PAN interpolated with `%d`, a
 * numeric property of an error). The whole value is the candidate, not each window of it as in
 * text (`withoutPans`), where a PAN may be glued to other digits: a number cannot be, and
 * windowing would censor most 16-digit microsecond times. 13 digits are left out: a time in
 * milliseconds has 13 (one in ten passes Luhn), and 13-digit PANs are no longer issued (cards
 * issues 16). Under 14 digits a number costs one comparison.
 */
function scrubbedNumber(value: number | bigint): number | bigint | string {
  if (typeof value === 'number' ? !(value >= 1e13 || value <= -1e13) : value < 10_000_000_000_000n && value > -10_000_000_000_000n) {
    return value;
  }
  const digits = panLength.exec(String(value))?.[1];
  return digits !== undefined && luhnValid(digits) ? redactedValue : value;
}

/** W3C trace and span ids (`trace_id`, `span_id` from the active span): ids, kept whatever digits they hold. */
const traceIdKey = /^(?:trace|span|parent[-_]?span)[-_]?id$/i;
const hexId = /^(?:[0-9a-f]{16}|[0-9a-f]{32})$/;

/** A logged string: without URL credentials and without PANs. */
function scrubbedString(text: string): string {
  return withoutPans(withoutCredentialsInUrls(text));
}

/**
 * Objects nested deeper than this (the line's object is depth 0, an error's causes count one
 * each) are logged as `[Object]`, `[Array]` or `[Error]`: a line stays small, and a deep or
 * self-building structure cannot exhaust the stack.
 */
const maxDepth = 10;

/**
 * The fields of a line, or the value of an error, that could not be walked (a getter or `toJSON`
 * that throws, a revoked proxy): a marker, never the raw value, which may hold what the walk
 * would have censored.
 */
function unserializable(): Record<string, unknown> {
  return { logError: 'unserializable' };
}

const inProgress = Symbol('in progress');

/**
 * Maps each object already walked in one log line or error to what replaces it (for an error,
 * its scrubbed stand-in), or to `inProgress` while its own walk is under way. An object reached
 * twice is walked once (a large shared graph stays linear), and one reached from inside itself,
 * through a plain object or an error alike, becomes `[Circular]`: a copy must not point back at
 * the original, which still holds what was censored. One map is shared by `redactValue`,
 * `scrubbedError` and `serializeError` for a whole walk.
 */
type Visited = Map<object, unknown>;

/** A walk's map. A line is walked synchronously, so one map, emptied after each walk, serves all. */
let idleVisited: Visited | undefined = new Map();

/** An empty map for a walk (a new one if a `toJSON` logs from inside a walk); give it back after. */
function takeVisited(): Visited {
  const visited = idleVisited ?? new Map();
  idleVisited = undefined;
  return visited;
}

function releaseVisited(visited: Visited): void {
  visited.clear();
  idleVisited = visited;
}

/**
 * Runs one walk of `value` with a map from the pool and gives the map back. Never throws: a
 * walk that does (a getter or `toJSON` that throws, a revoked proxy) gives
 * `{ logError: 'unserializable' }`, never the raw value.
 */
function walkSafely(value: unknown, walk: (value: unknown, visited: Visited) => unknown): unknown {
  const visited = takeVisited();
  try {
    return walk(value, visited);
  } catch {
    return unserializable();
  } finally {
    releaseVisited(visited);
  }
}

const redactWhole = (value: unknown, visited: Visited) => redactValue(value, visited, 0);
/** A line's object: its top-level `err` is left to the `err` serializer, which pino runs after the formatters. */
const redactAllButErr = (value: unknown, visited: Visited) => redactValue(value, visited, 0, 'err');

/**
 * Returns `value` with the value of every sensitive key censored, at any depth, the credentials
 * of URLs removed, and every `Error` in it serialised as `serializeError` does. Copy on write:
 * the caller's objects are never changed, and when nothing matches (nearly every line) `value`
 * itself comes back, having cost one regular-expression test per key and allocated nothing.
 * Objects with a `toJSON` are replaced by what it returns, censored in turn, except a `Date`
 * (kept) and a `Buffer` or typed array (summarised as `{ type, byteLength }`). Never throws: a
 * value that cannot be walked becomes `{ logError: 'unserializable' }`.
 */
export function redactSensitive<T>(value: T): T {
  return walkSafely(value, redactWhole) as T;
}

/**
 * `redactSensitive` for a log line's object and a child logger's bindings, leaving the error at
 * the top-level `err` to the `err` serializer (which pino runs after the formatters). When the
 * object cannot be walked, the line keeps only its level, time, bindings, `msg` and the marker.
 */
function redactLogObject<T extends Record<string, unknown>>(object: T): T {
  return walkSafely(object, redactAllButErr) as T;
}

function redactValue(value: unknown, visited: Visited, depth: number, serializedLater?: string): unknown {
  if (typeof value === 'string') return scrubbedString(value);
  if (typeof value === 'number' || typeof value === 'bigint') return scrubbedNumber(value);
  if (value === null || typeof value !== 'object') return value;
  const known = visited.get(value);
  if (known !== undefined) {
    if (known === inProgress) return '[Circular]';
    // An error's entry is its stand-in, an `Error` (no other walk's result is one).
    return known instanceof Error ? stdSerializers.err(known) : known;
  }
  if (depth > maxDepth) return Array.isArray(value) ? '[Array]' : value instanceof Error ? '[Error]' : '[Object]';
  if (value instanceof Error) return stdSerializers.err(scrubbedError(value as ErrorLike, visited, depth));
  // pino would print a Buffer's toJSON, one number per byte (`{"type":"Buffer","data":[…]}`),
  // and a typed array as one key per byte: bytes that may be key material, and long.
  if (ArrayBuffer.isView(value)) return { type: value.constructor.name, byteLength: value.byteLength };
  const toJSON = (value as { toJSON?: unknown }).toJSON;
  if (typeof toJSON === 'function') {
    if (value instanceof Date) return value;
    // URL#toJSON is its href, user and password included.
    if (value instanceof URL) return withoutCredentialsInUrls(value.href);
  }
  visited.set(value, inProgress);
  let result: unknown;
  if (typeof toJSON === 'function') {
    // What JSON.stringify would print, censored in turn (a class whose toJSON lists a `pan`).
    const json: unknown = toJSON.call(value, '');
    if (json === value) {
      // A toJSON returning `this`: its own keys. Always a copy, so pino does not call it again.
      const walked = redactRecord(value as Record<string, unknown>, visited, depth);
      result = walked === value ? { ...walked } : walked;
    } else {
      result = redactValue(json, visited, depth + 1);
    }
  } else if (Array.isArray(value)) {
    let copy: unknown[] | undefined;
    for (let i = 0; i < value.length; i++) {
      const item = value[i];
      const redacted = redactValue(item, visited, depth + 1);
      if (redacted !== item) {
        copy ??= value.slice();
        copy[i] = redacted;
      }
    }
    result = copy ?? value;
  } else {
    result = redactRecord(value as Record<string, unknown>, visited, depth, serializedLater);
  }
  visited.set(value, result);
  return result;
}

function redactRecord(record: Record<string, unknown>, visited: Visited, depth: number, serializedLater?: string): Record<string, unknown> {
  let copy: Record<string, unknown> | undefined;
  for (const key in record) {
    if (key === serializedLater || !Object.hasOwn(record, key)) continue;
    const item = record[key];
    const redacted = censorsUnder(key, item)
      ? censored(item)
      : typeof item === 'string' && traceIdKey.test(key) && hexId.test(item)
        ? item
        : redactValue(item, visited, depth + 1);
    if (redacted !== item) {
      copy ??= { ...record };
      copy[key] = redacted;
    }
  }
  return copy ?? record;
}

/**
 * Bound values inside error text. A failed drizzle query (drizzle-orm 0.45 `DrizzleQueryError`)
 * says `Failed query: <sql>\nparams: <every bound value>`, and PostgreSQL quotes the offending
 * value in some messages and details: emails, idempotency keys, API-key secret hashes, free-text
 * descriptions. The SQL, the constraint and the error code stay: they are what an operator needs.
 * A URL's credentials (a connection string in a driver's message) go too.
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
  return withoutPans(withoutCredentialsInUrls(scrubbed));
}

/**
 * Whether a database error's message was written by a function rather than by PostgreSQL: a
 * PL/pgSQL `RAISE` or `ASSERT` (whatever SQLSTATE it chose), an error raised from another
 * procedural language's source file, or a code of class P0 (PL/pgSQL errors). node-postgres
 * and PGlite both pass PostgreSQL's `routine` and `file` fields through.
 */
export function isFunctionAuthored(error: object): boolean {
  const { code, routine, file } = error as { code?: unknown; routine?: unknown; file?: unknown };
  if (typeof code === 'string' && code.startsWith('P0')) return true;
  if (typeof routine === 'string' && /^exec_stmt_(raise|assert)$/.test(routine)) return true;
  return typeof file === 'string' && /^(pl_|plpy_|plperl|pltcl|plv8)/.test(file);
}

/**
 * `text` without anything that looks like a value rather than a word: runs of 16 or more id,
 * base64 or hex characters (card and user ids, ciphertexts, fingerprints, keys), runs of four
 * or more digits (PAN fragments, BINs, amounts) and e-mail addresses. For the message of a
 * function-authored error (`isFunctionAuthored`), which is free text that may interpolate
 * anything the function sees (`RAISE EXCEPTION 'card % …', new.id`, the whole `new` row): the
 * words an operator needs to find the function stay. A heuristic: a short value that reads like
 * a word (a name) is kept.
 */
export function withoutInterpolatedData(text: string): string {
  return text
    .replace(/[^\s@,()"']+@[^\s@,()"']+/g, '[redacted]')
    .replace(/[A-Za-z0-9+/=_-]{16,}/g, '[redacted]')
    .replace(/\d{4,}/g, '[redacted]');
}

/**
 * Keys of an error that are dropped: those under which drivers and query builders attach the
 * bound values (`params`, postgres.js's `parameters`, knex's `bindings`, PGlite's
 * `queryOptions`), and the PostgreSQL fields that quote values and have no fixed shape to scrub
 * them from: `where` (the context: `JSON data, line 1: {"email": "…`, a PL/pgSQL statement),
 * `internalQuery` (a statement a function ran, with the values inlined) and `hint` (free text a
 * function may set with `RAISE … USING HINT`). `detail` is kept only in a value-free shape
 * (`scrubbedDetail`). `code`, `constraint`, `table`, `column`, `schema`, `dataType`, `severity`,
 * `routine`, `file` and `line` are identifiers and are kept.
 */
const droppedErrorKeys = new Set(['params', 'parameters', 'bindings', 'queryOptions', 'where', 'internalQuery', 'internal_query', 'hint']);

/**
 * The details PostgreSQL writes for constraint violations, once `scrubErrorText` has censored
 * their values: the key columns and the table, which are schema, not data. The columns may be
 * expressions (`Key (lower(email))=(…)`).
 */
const valueFreeDetail =
  /^(?:Key \((?:[^()\n]|\([^()\n]*\))*\)=\(\[redacted\]\) (?:already exists|is not present in table "[^"\n]*"|is still referenced from table "[^"\n]*")|Failing row contains \(\[redacted\]\))\.$/;

/**
 * A PostgreSQL `detail`: a constraint violation's, scrubbed (`Key (lower(email))=([redacted])
 * already exists.`), or `[redacted]` for any other, which may quote anything (`Token "…" is
 * invalid.`, `RAISE … USING DETAIL`). `null` and `undefined` are kept.
 */
function scrubbedDetail(detail: unknown): unknown {
  if (detail === undefined || detail === null) return detail;
  if (typeof detail !== 'string') return redactedValue;
  const scrubbed = scrubErrorText(detail);
  return valueFreeDetail.test(scrubbed) ? scrubbed : redactedValue;
}

type ErrorLike = Error & Record<string, unknown>;

function isErrorLike(value: unknown): value is ErrorLike {
  return typeof value === 'object' && value !== null && typeof (value as { message?: unknown }).message === 'string';
}

/**
 * Whether `error` is drizzle's `DrizzleQueryError` (`Failed query: <sql>\nparams: <values>`,
 * with `query` and `params` properties). Recognised by shape, not `instanceof`: the platform does
 * not depend on drizzle-orm, a second copy of drizzle has its own class, and a structured clone
 * loses the class. The class sets no `name`, so its constructor's name, a `name` set by hand, or
 * the message drizzle writes; PGlite's own errors also carry `query` and `params` but their
 * message is PostgreSQL's, and they are not recognised.
 */
function isDrizzleQueryError(error: ErrorLike): error is ErrorLike & { query: string; params: unknown[] } {
  if (typeof error.query !== 'string' || !Array.isArray(error.params)) return false;
  const errorClass = error.constructor as unknown;
  return (
    (typeof errorClass === 'function' && errorClass.name === 'DrizzleQueryError') ||
    error.name === 'DrizzleQueryError' ||
    error.message.startsWith('Failed query: ')
  );
}

/**
 * The message of `error` to log: a `DrizzleQueryError`'s rebuilt from its SQL with the number
 * of bound values in place of them (`Failed query: <sql>\nparams: [redacted 4]`), any other's
 * scrubbed by `scrubErrorText`, and a function-authored one's (`RAISE`) without its
 * interpolated data too (`withoutInterpolatedData`).
 */
function scrubbedMessage(error: ErrorLike): string {
  if (isDrizzleQueryError(error)) {
    return `Failed query: ${scrubbedString(error.query)}\nparams: [redacted ${error.params.length}]`;
  }
  const scrubbed = scrubErrorText(error.message);
  return isFunctionAuthored(error) ? withoutInterpolatedData(scrubbed) : scrubbed;
}

/** Sets `key` as a non-enumerable data property, as an `Error`'s own `message` and `stack` are. */
function setHidden(object: object, key: string, value: unknown): void {
  Object.defineProperty(object, key, { value, writable: true, configurable: true, enumerable: false });
}

/** An error with only a message and no stack of its own: what stands for a cut or circular cause. */
function placeholderError(message: string): ErrorLike {
  const placeholder = Object.create(Error.prototype) as ErrorLike;
  setHidden(placeholder, 'message', message);
  setHidden(placeholder, 'stack', message);
  return placeholder;
}

/**
 * A stand-in for `error` (its constructor, so the same type name) whose message, stack and string
 * properties are scrubbed (a `DrizzleQueryError`'s message and stack say how many values were
 * bound, not what they were), without the `droppedErrorKeys`, with a `detail` only in a
 * value-free shape, whose other properties are
 * censored as `redactValue` does, and whose cause, nested errors and aggregated errors are
 * stand-ins too. `error` itself is not changed. The stand-in inherits from `Error.prototype`, not
 * from `error`'s class, so no class accessor runs against it. A cause that leads back to an error
 * being scrubbed is `[Circular]`, one nested deeper than `maxDepth` is `[Error]`.
 */
function scrubbedError(error: ErrorLike, visited: Visited, depth: number): ErrorLike {
  const known = visited.get(error);
  if (known === inProgress) return placeholderError('[Circular]');
  if (known instanceof Error) return known as ErrorLike;
  if (depth > maxDepth) return placeholderError('[Error]');
  visited.set(error, inProgress);
  const copy = Object.create(Error.prototype) as ErrorLike;
  const message = scrubbedMessage(error);
  let stack = typeof error.stack === 'string' ? error.stack : undefined;
  if (stack !== undefined) {
    // The stack starts with the message: replace it whole, so a bound value holding newlines
    // (or text shaped like a stack frame) cannot outlast the scrubbing of its first line.
    const at = error.message ? stack.indexOf(error.message) : -1;
    stack = at === -1 ? scrubErrorText(stack) : `${stack.slice(0, at)}${message}${stack.slice(at + error.message.length)}`;
  }
  const hidden = (key: string, value: unknown) => setHidden(copy, key, value);
  hidden('constructor', error.constructor);
  hidden('name', error.name);
  hidden('message', message);
  hidden('stack', stack);
  const nested = (value: unknown) =>
    isErrorLike(value) ? scrubbedError(value, visited, depth + 1) : redactValue(value, visited, depth + 1);
  const cause = typeof error.cause === 'function' ? (error.cause as () => unknown)() : error.cause;
  if (cause !== undefined) hidden('cause', nested(cause));
  const errors = error.errors;
  if (Array.isArray(errors)) hidden('errors', errors.map(nested));
  // Every enumerable key, inherited ones too, as pino's serializer copies them.
  for (const key in error) {
    if (droppedErrorKeys.has(key) || key === 'cause' || key === 'errors') continue;
    const value = error[key];
    copy[key] = censorsUnder(key, value)
      ? censored(value)
      : key === 'detail'
        ? scrubbedDetail(value)
        : typeof value === 'string'
          ? scrubErrorText(value)
          : nested(value);
  }
  visited.set(error, copy);
  return copy;
}

const serializeWhole = (error: unknown, visited: Visited) =>
  isErrorLike(error) ? stdSerializers.err(scrubbedError(error, visited, 0)) : redactValue(error, visited, 0);

/**
 * The `err` serializer of every service's logger: pino's standard one (type, message and stack
 * with those of the causes appended, enumerable properties) over a scrubbed stand-in, so bound
 * query values and sensitive keys never reach a log line. A string is scrubbed. Never throws:
 * an error that cannot be walked becomes `{ logError: 'unserializable' }`, the rest of the line
 * is kept.
 */
export function serializeError(error: unknown): unknown {
  if (typeof error === 'string') return scrubErrorText(error);
  return walkSafely(error, serializeWhole);
}

/**
 * The arguments of a log call with its message template and the values interpolated into it
 * (`logger.info('user %j', user)`, `logger.warn({ id }, 'from %s', url)`) censored: pino formats
 * those into `msg` itself, where neither the formatters nor the serializers see them. An object
 * is censored as `redactSensitive` does, an error as the `err` serializer does, a string (the
 * template among them) loses URL credentials. `args` itself when there is nothing to censor
 * (no interpolated values and no URL in the template: nearly every call).
 */
function redactedFormatArgs<Args extends unknown[]>(args: Args): Args {
  // pino: a first argument that is an object (or `undefined`) is the line's object, and the
  // template follows it; otherwise the first argument is the template.
  const template = typeof args[0] === 'object' || args[0] === undefined ? 1 : 0;
  const text = args[template];
  if (args.length <= template + 1 && redactedFormatArg(text) === text) return args;
  const safe = args.slice() as Args;
  let censoredNumbers: Set<number> | undefined;
  for (let i = template; i < safe.length; i++) {
    const value = safe[i];
    safe[i] = redactedFormatArg(value);
    if (i > template && safe[i] !== value && (typeof value === 'number' || typeof value === 'bigint')) {
      censoredNumbers ??= new Set();
      censoredNumbers.add(i - template - 1);
    }
  }
  if (censoredNumbers && typeof safe[template] === 'string') safe[template] = numberPlaceholdersAsText(safe[template], censoredNumbers);
  return safe;
}

/**
 * `template` with each `%d`, `%i` or `%f` that takes one of the `censored` arguments (by index
 * after the template) turned into `%s`: a censored number is the text `[redacted]`, which those
 * would print as `NaN`. Walks the template as pino's formatter (quick-format-unescaped) does:
 * `%%` takes no argument, any other `%` and character takes the next one (an unknown placeholder
 * too, printed as written). Same length, and the censored argument is never null, so every other
 * placeholder keeps its argument.
 */
function numberPlaceholdersAsText(template: string, censored: ReadonlySet<number>): string {
  let out: string | undefined;
  let argument = 0;
  for (let i = 0; i + 1 < template.length; i++) {
    if (template.charCodeAt(i) !== 37) continue;
    const kind = template[i + 1];
    if (kind === '%') {
      i++;
      continue;
    }
    if ((kind === 'd' || kind === 'i' || kind === 'f') && censored.has(argument)) {
      out = `${(out ?? template).slice(0, i + 1)}s${(out ?? template).slice(i + 2)}`;
    }
    argument++;
    // quick-format skips the placeholder's letter when it printed an argument, and looks at it
    // again otherwise (an unknown letter, no argument left, or a null/undefined one): only `%`
    // matters there, and a letter is never `%`, so skipping it always reads the same placeholders.
    i++;
  }
  return out ?? template;
}

function redactedFormatArg(value: unknown): unknown {
  if (typeof value === 'string') return scrubbedString(value);
  // `logger.info('card %d', pan)`, or a number as the message itself.
  if (typeof value === 'number' || typeof value === 'bigint') return scrubbedNumber(value);
  if (value === null || typeof value !== 'object') return value;
  return isErrorLike(value) ? serializeError(value) : redactSensitive(value);
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
        logMethod(args, method) {
          try {
            // Given an error and no message, pino logs the error's own message as `msg`
            // (`logger.error(error)`, `logger.error({ err })`): scrub that too.
            if (args.length === 1) {
              const [first] = args as unknown[];
              const fields = (typeof first === 'object' && first !== null ? first : {}) as { err?: unknown; msg?: unknown };
              const error = first instanceof Error ? first : fields.msg === undefined ? fields.err : undefined;
              if (isErrorLike(error)) return method.call(this, first as object, scrubbedMessage(error));
            }
            return method.apply(this, redactedFormatArgs(args));
          } catch {
            // The formatters and the serializer do not throw, but pino reads the object too (a
            // getter, a revoked proxy). Logging often happens in a catch block, where a throw
            // would escape the handler: write the minimal line instead, with the message
            // template (never its arguments) and nothing of the object.
            const [first, second] = args as unknown[];
            const msg = typeof first === 'string' ? first : typeof second === 'string' ? second : undefined;
            try {
              return method.call(this, unserializable(), msg);
            } catch {
              return undefined;
            }
          }
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

/**
 * A warning for a dependency that fails every call while it is down (a Redis used for shared
 * limits): logged at most once per `intervalMs` with the error's message, so an outage is
 * reported without a line per request.
 */
export function throttledWarning(logger: Pick<Logger, 'warn'>, intervalMs = 10_000): (error: unknown, message: string) => void {
  let lastWarning = 0;
  return (error, message) => {
    if (Date.now() - lastWarning <= intervalMs) return;
    lastWarning = Date.now();
    logger.warn({ err: (error as Error | undefined)?.message }, message);
  };
}
