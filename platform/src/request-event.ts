import { createHash } from 'node:crypto';
/**
 * The request event the router emits for every GraphQL request and the analytics service
 * stores. It lives in platform because both sides need it and the router must not import a
 * subgraph's source.
 *
 * What an event never carries: variable values, tokens, API keys, card data. The router only
 * fills the fields below, and `redactRequestEvent` is a second line of defence applied by the
 * emitter before sending and again by the analytics service at ingest.
 */
export interface RequestEvent {
  /** When the request arrived, ISO-8601 UTC (`2026-01-31T12:00:00.000Z`). */
  timestamp: string;
  requestId: string;
  /** W3C trace id (32 hex) when tracing is on. */
  traceId: string | null;
  /** The operation name the client sent; null for anonymous operations. */
  operationName: string | null;
  operationType: 'query' | 'mutation' | 'subscription' | null;
  /** The API key id (`key_…`, never the key itself) the token was minted from. */
  apiKeyId: string | null;
  userId: string | null;
  role: string | null;
  httpStatus: number;
  /** `extensions.code` of every error in the response, from the closed list. */
  errorCodes: string[];
  latencyMs: number;
  subgraphTimings: SubgraphTiming[];
  /**
   * Unique per event, assigned by the emitter before the first delivery attempt and kept across
   * retries, so the analytics service can ignore a batch it already stored.
   */
  eventId?: string;
}

export interface SubgraphTiming {
  subgraph: string;
  ms: number;
}

/**
 * Length limits of request event fields, in UTF-16 code units.
 *
 * - `eventId`, `requestId`: identifiers are never cut, since a cut id can collide with another
 *   (two event ids sharing their first 100 characters were stored as one event and a duplicate).
 *   A longer non-UUID id is dropped by `redactRequestEvent`, and the analytics ingest refuses an
 *   event carrying one as invalid. 128 is the longest request id the router accepts
 *   (`x-request-id`); the emitter's event ids are UUIDs (36).
 * - `operationName`: a longer name is bounded to 200 characters, its first 183 and a hash of the
 *   whole (`boundOperationName`), at ingest and in every analytics query that takes a name, so a
 *   lookup by the full name finds it and two long names stay apart.
 *   The event is kept: refusing it would leave a request out of usage and error rates, and a
 *   client could hide its traffic behind a long name.
 */
export const requestEventLimits = { eventId: 100, requestId: 128, operationName: 200 } as const;

/** The end of a bounded operation name: `~` and 16 base64url characters of the full name's SHA-256 (96 bits). */
const operationNameHashLength = 17;

/**
 * An operation name as the analytics service stores it: a name within
 * `requestEventLimits.operationName` characters as it is; a longer one as its first 183
 * characters (never ending in half a surrogate pair), `~` and 16 base64url characters of the
 * whole name's SHA-256, 200 at most. Two long names that share their first 183 characters stay
 * two names (cut without the hash, they were counted as one, and a client chooses its names).
 * A bounded name is bounded already, so the router's emitter, ingest and every query by name
 * apply it alike and a lookup by the full name finds it.
 */
export function boundOperationName(name: string): string {
  const max = requestEventLimits.operationName;
  if (name.length <= max) return name;
  let keep = max - operationNameHashLength;
  const code = name.charCodeAt(keep - 1);
  if (code >= 0xd800 && code <= 0xdbff) keep--;
  return `${name.slice(0, keep)}~${createHash('sha256').update(name).digest('base64url').slice(0, 16)}`;
}

/** A Luhn check over a string of digits. */
export function luhnValid(digits: string): boolean {
  let sum = 0;
  let double = false;
  for (let i = digits.length - 1; i >= 0; i--) {
    let d = digits.charCodeAt(i) - 48;
    if (double) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    double = !double;
  }
  return sum % 10 === 0;
}

/**
 * A run of at least 13 digits where a single space, dash, underscore or dot may separate them:
 * how PANs are pasted ("4111 1111 1111 1111", "4111-1111-1111-1111") and how they survive in an
 * identifier such as an operation name ("Pay_4111_1111_1111_1111", "card.4111.1111.1111.1111").
 * Not global: `test` keeps no state; `digitRuns` is the global twin for matching every run.
 */
export const panDigitRun = /\d(?:[ _.-]?\d){12,}/;
const digitRuns = new RegExp(panDigitRun.source, 'g');
const digitSeparators = /[ _.-]/g;

/** Whether some 13–19 digit window of a digit run (as `panDigitRun` matches) passes Luhn: a PAN, even glued to other digits. */
export function digitRunHoldsPan(run: string): boolean {
  const digits = run.replace(digitSeparators, '');
  for (let length = 13; length <= 19; length++) {
    for (let start = 0; start + length <= digits.length; start++) {
      if (luhnValid(digits.slice(start, start + length))) return true;
    }
  }
  return false;
}

// Three base64url segments, the first starting with eyJ (`{"` base64-encoded). Generous: two
// segments are enough, so a JWT cut in half still counts.
const jwtLike = /eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+/;
// Auth issues `gp_<12 base62>_<43 base62>`; any `gp_` followed by 8+ key characters counts,
// so a truncated key or only its visible prefix never slips through either.
const apiKeyLike = /gp_[A-Za-z0-9_-]{8,}/i;
const bearerLike = /bearer\s+\S{8,}/i;

function containsPan(value: string): boolean {
  for (const match of value.matchAll(digitRuns)) if (digitRunHoldsPan(match[0])) return true;
  return false;
}

/** True when `value` contains something that looks like a PAN, a JWT, an API key or a bearer credential. */
export function looksSecret(value: string): boolean {
  return jwtLike.test(value) || apiKeyLike.test(value) || bearerLike.test(value) || containsPan(value);
}

// A W3C trace id: 32 lowercase hex digits, not all zero.
const w3cTraceId = /^(?!0{32}$)[0-9a-f]{32}$/;

/**
 * A trace id is kept in W3C form only, and then whatever digits it holds: it is an identifier,
 * not text, and 0.65% of random ones hold a Luhn-valid 13–19 digit run (measured over 200,000),
 * which the PAN check would drop. Ids a caller chose (its `traceparent`) are checked by the
 * router before they get here (`callerSafeId` in @ghostpay/router).
 */
function w3cTraceIdOrNull(value: unknown): string | null {
  return typeof value === 'string' && w3cTraceId.test(value) ? value : null;
}

// What randomUUID() makes: the router's request ids and the emitter's event ids.
const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * An id kept whatever digits it holds when it is a UUID, for the same reason as trace ids:
 * 0.72% of random UUIDs hold a Luhn-valid run (measured over 200,000), and an event without its
 * event id is no longer deduplicated at ingest. Anything else in an id field is checked as text,
 * and dropped when longer than `maxLength`: never cut, since a cut id can equal another one.
 */
function idOf(value: unknown, maxLength: number): string | null {
  if (typeof value !== 'string') return null;
  if (uuid.test(value)) return value;
  return value.length > maxLength ? null : clean(value, maxLength);
}

function clean(value: unknown, maxLength = 200): string | null {
  if (typeof value !== 'string' || value.length === 0) return null;
  const bounded = value.length > maxLength ? value.slice(0, maxLength) : value;
  return looksSecret(bounded) ? null : bounded;
}

function finiteNumber(value: unknown, fallback: number): number {
  return typeof value === 'number' && Number.isFinite(value) ? value : fallback;
}

const operationTypes = new Set(['query', 'mutation', 'subscription']);

// An ISO 8601 date-time with a zone, any number of fractional digits (`z.iso.datetime({ offset: true })`'s form).
const isoTimestamp = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})$/i;

/**
 * The event's time in the router's form (`2026-01-31T12:00:00.000Z`, milliseconds, UTC), which
 * holds no digit run a PAN check could take for a card number: ISO 8601 allows any number of
 * fractional digits, and a long run of them passed for a PAN, so the timestamp was dropped and
 * the event stored at 1970 (counted in 1970's minutes, its log swept at once). Not an ISO
 * timestamp at all (a caller's mistake: the router always sets one, ingest validates it): the
 * redaction's own time, the nearest to the event's there is, never 1970.
 */
function timestampOf(value: unknown): string {
  if (typeof value === 'string' && value.length <= 64 && isoTimestamp.test(value)) {
    const at = Date.parse(value);
    if (Number.isFinite(at)) return new Date(at).toISOString();
  }
  return new Date().toISOString();
}

/**
 * Returns a copy holding only the known fields, each string that looks secret dropped (set to
 * null, or left out of a list); the timestamp is normalised to milliseconds, UTC (`timestampOf`). Unknown fields are never copied, so a caller that adds
 * `variables` by mistake cannot leak them. Strings are bounded in length: an operation name is
 * cut (`boundOperationName`), an id longer than its limit is dropped (`requestEventLimits`).
 */
export function redactRequestEvent(event: RequestEvent): RequestEvent {
  const input = event as unknown as Record<string, unknown>;
  const operationType = clean(input.operationType, 20);
  const result: RequestEvent = {
    timestamp: timestampOf(input.timestamp),
    requestId: idOf(input.requestId, requestEventLimits.requestId) ?? '[redacted]',
    traceId: w3cTraceIdOrNull(input.traceId),
    operationName: typeof input.operationName === 'string' ? clean(boundOperationName(input.operationName)) : null,
    operationType: operationType && operationTypes.has(operationType) ? (operationType as RequestEvent['operationType']) : null,
    apiKeyId: clean(input.apiKeyId, 100),
    userId: clean(input.userId, 100),
    role: clean(input.role, 40),
    httpStatus: finiteNumber(input.httpStatus, 0),
    errorCodes: Array.isArray(input.errorCodes)
      ? input.errorCodes
          .slice(0, 50)
          .map((code) => clean(code, 60))
          .filter((code): code is string => code !== null)
      : [],
    latencyMs: finiteNumber(input.latencyMs, 0),
    subgraphTimings: Array.isArray(input.subgraphTimings)
      ? input.subgraphTimings.slice(0, 50).flatMap((timing: unknown) => {
          const t = (timing ?? {}) as Record<string, unknown>;
          const subgraph = clean(t.subgraph, 60);
          return subgraph ? [{ subgraph, ms: finiteNumber(t.ms, 0) }] : [];
        })
      : [],
  };
  const eventId = idOf(input.eventId, requestEventLimits.eventId);
  if (eventId) result.eventId = eventId;
  return result;
}
