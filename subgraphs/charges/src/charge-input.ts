import { createHash } from 'node:crypto';
import { maxAmountMinorUnits } from '@ghostpay/db';
import {
  BadUserInputError,
  containsCardNumber,
  currencyExponent,
  type FieldProblem,
  keyContainsCardNumber,
  unstorableReason,
} from '@ghostpay/platform';

export const maxDescriptionLength = 500;
export const maxIdempotencyKeyLength = 255;

export interface CreateChargeInput {
  cardId: string;
  amount: number;
  currency: string;
  description?: string | null;
}

/**
 * Whether `id` can be an id as we issue them: 1–64 characters, nothing that PostgreSQL would
 * refuse or alter. Lookups skip the others: no row has them, and a NUL would fail the query.
 */
export function isPossibleId(id: string): boolean {
  return id.length > 0 && id.length <= 64 && unstorableReason(id) === undefined;
}

/**
 * Whether `text` has more than `max` characters counted as Unicode code points, as the REST
 * contract's `maxLength` (JSON Schema) and PostgreSQL's `char_length` count them: an emoji is one,
 * where `String.length` counts two UTF-16 units. Stops counting at `max + 1`.
 */
function longerThan(text: string, max: number): boolean {
  if (text.length <= max) return false;
  let count = 0;
  for (const _ of text) if (++count > max) return true;
  return false;
}

function checkId(problems: FieldProblem[], field: string, id: string, what: string) {
  if (!isPossibleId(id)) problems.push({ field, message: `is not ${what}` });
}

function checkAmount(problems: FieldProblem[], field: string, amount: number) {
  if (!Number.isSafeInteger(amount) || amount <= 0 || amount > maxAmountMinorUnits) {
    problems.push({ field, message: 'must be a positive integer amount in minor units' });
  }
}

function checkIdempotencyKey(problems: FieldProblem[], key: string) {
  const invalid = unstorableReason(key);
  if (key.trim().length === 0) problems.push({ field: 'idempotencyKey', message: 'must not be empty' });
  else if (key.length > maxIdempotencyKeyLength) {
    problems.push({ field: 'idempotencyKey', message: `must be at most ${maxIdempotencyKeyLength} characters` });
  } else if (invalid) problems.push({ field: 'idempotencyKey', message: invalid });
  else if (keyContainsCardNumber(key)) {
    problems.push({ field: 'idempotencyKey', message: 'must not contain a card number (it is stored in clear)' });
  }
}

/** Validates a createCharge request; throws BAD_USER_INPUT listing every problem, before anything is written. */
export function validateCreateCharge(input: CreateChargeInput, idempotencyKey: string): void {
  const problems: FieldProblem[] = [];
  checkId(problems, 'input.cardId', input.cardId, 'a card id');
  checkAmount(problems, 'input.amount', input.amount);
  if (currencyExponent(input.currency) === undefined) {
    problems.push({ field: 'input.currency', message: 'must be an ISO-4217 currency code such as USD' });
  }
  if (input.description != null) {
    const invalid = unstorableReason(input.description, { allowLineBreaks: true });
    if (longerThan(input.description, maxDescriptionLength)) {
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
