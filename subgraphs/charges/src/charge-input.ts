import { createHash } from 'node:crypto';
import { BadUserInputError, type FieldProblem } from '@ghostpay/platform';

const knownCurrencies = new Set(Intl.supportedValuesOf('currency'));
export const maxDescriptionLength = 500;
export const maxIdempotencyKeyLength = 255;
/** GraphQL Int's upper bound; amounts are minor units. */
const maxAmount = 2_147_483_647;

export interface CreateChargeInput {
  cardId: string;
  amount: number;
  currency: string;
  description?: string | null;
}

/**
 * Control characters (C0, DEL, C1). PostgreSQL cannot store U+0000 in text or jsonb at all
 * (the statement fails); the others have no business in an id or a key, and in logs and
 * terminals they can forge lines or escape sequences.
 */
const controlCharacter = /\p{Cc}/u;
/** The same, except tab, line feed and carriage return, which free text such as a description may hold. */
const controlCharacterInText = /[^\P{Cc}\t\n\r]/u;

/**
 * Why a string cannot be stored as given, or undefined. A lone UTF-16 surrogate (JSON allows
 * `"\ud800"`) would be stored as U+FFFD: two different keys would become one.
 */
function unstorable(value: string, allowLineBreaks = false): string | undefined {
  if ((allowLineBreaks ? controlCharacterInText : controlCharacter).test(value)) {
    return allowLineBreaks ? 'must not contain control characters other than tab and line breaks' : 'must not contain control characters';
  }
  if (!value.isWellFormed()) return 'must be valid Unicode text (no lone surrogates)';
  return undefined;
}

/** A Luhn (mod 10) check over a string of digits. */
function luhnValid(digits: string): boolean {
  let sum = 0;
  for (let i = 0; i < digits.length; i++) {
    let d = digits.charCodeAt(digits.length - 1 - i) - 48;
    if (i % 2 === 1) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return sum % 10 === 0;
}

/**
 * Whether `text` holds what looks like a card number: 13–19 digits starting with a payment
 * network's major industry identifier (2–6) that pass Luhn, written in one piece or in groups
 * split by single spaces or dashes as PANs are pasted ("4111 1111 1111 1111"), also when more
 * groups follow ("4111-1111-1111-1111-2027"). Text we store and replay must never hold one in
 * clear: a description is kept in the charge row, in every event's snapshot and in the
 * idempotency key's replay, and is streamed to subscribers.
 */
export function containsCardNumber(text: string): boolean {
  for (const run of text.matchAll(/\d+(?:[ -]\d+)*/g)) {
    const groups = run[0].split(/[ -]/);
    for (let first = 0; first < groups.length; first++) {
      let digits = '';
      for (let last = first; last < groups.length && digits.length <= 19; last++) {
        digits += groups[last];
        if (digits.length >= 13 && digits.length <= 19 && /^[2-6]/.test(digits) && luhnValid(digits)) return true;
      }
    }
  }
  return false;
}

/**
 * What randomUUID() makes. Its digits can pass as a card number across its dashes (about one
 * random UUID in 20,000), so a key is checked without the UUIDs it holds: a UUID key, or one
 * built around a UUID (the bridge's own `bridge-<uuid>`), is never refused for its digits.
 */
const uuids = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/gi;

/**
 * Whether `id` can be an id as we issue them: 1–64 characters, nothing that PostgreSQL would
 * refuse or alter. Lookups skip the others: no row has them, and a NUL would fail the query.
 */
export function isPossibleId(id: string): boolean {
  return id.length > 0 && id.length <= 64 && unstorable(id) === undefined;
}

function checkId(problems: FieldProblem[], field: string, id: string, what: string) {
  if (!isPossibleId(id)) problems.push({ field, message: `is not ${what}` });
}

function checkAmount(problems: FieldProblem[], field: string, amount: number) {
  if (!Number.isSafeInteger(amount) || amount <= 0 || amount > maxAmount) {
    problems.push({ field, message: 'must be a positive integer amount in minor units' });
  }
}

function checkIdempotencyKey(problems: FieldProblem[], key: string) {
  const invalid = unstorable(key);
  if (key.trim().length === 0) problems.push({ field: 'idempotencyKey', message: 'must not be empty' });
  else if (key.length > maxIdempotencyKeyLength) {
    problems.push({ field: 'idempotencyKey', message: `must be at most ${maxIdempotencyKeyLength} characters` });
  } else if (invalid) problems.push({ field: 'idempotencyKey', message: invalid });
  else if (containsCardNumber(key.replace(uuids, '_'))) {
    problems.push({ field: 'idempotencyKey', message: 'must not contain a card number (it is stored in clear)' });
  }
}

/** Validates a createCharge request; throws BAD_USER_INPUT listing every problem, before anything is written. */
export function validateCreateCharge(input: CreateChargeInput, idempotencyKey: string): void {
  const problems: FieldProblem[] = [];
  checkId(problems, 'input.cardId', input.cardId, 'a card id');
  checkAmount(problems, 'input.amount', input.amount);
  if (!/^[A-Z]{3}$/.test(input.currency) || !knownCurrencies.has(input.currency)) {
    problems.push({ field: 'input.currency', message: 'must be an ISO-4217 currency code such as USD' });
  }
  if (input.description != null) {
    const invalid = unstorable(input.description, true);
    if (input.description.length > maxDescriptionLength) {
      problems.push({ field: 'input.description', message: `must be at most ${maxDescriptionLength} characters` });
    } else if (invalid) problems.push({ field: 'input.description', message: invalid });
    else if (containsCardNumber(input.description)) {
      problems.push({ field: 'input.description', message: 'must not contain a card number (it is stored and shown in clear)' });
    }
  }
  checkIdempotencyKey(problems, idempotencyKey);
  if (problems.length > 0) throw new BadUserInputError(problems);
}

export function validateRefund(chargeId: string, amount: number | null | undefined, idempotencyKey: string): void {
  const problems: FieldProblem[] = [];
  checkId(problems, 'id', chargeId, 'a charge id');
  if (amount != null) checkAmount(problems, 'amount', amount);
  checkIdempotencyKey(problems, idempotencyKey);
  if (problems.length > 0) throw new BadUserInputError(problems);
}

/** JSON with object keys sorted, so equal inputs fingerprint equally whatever the key order. */
function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value ?? null);
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
}

/** sha256 of the canonical request: what "same parameters" means for an idempotent replay. */
export function requestFingerprint(operation: string, params: Record<string, unknown>): string {
  return createHash('sha256').update(canonicalJson({ operation, params })).digest('hex');
}
