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

function checkAmount(problems: FieldProblem[], field: string, amount: number) {
  if (!Number.isSafeInteger(amount) || amount <= 0 || amount > maxAmount) {
    problems.push({ field, message: 'must be a positive integer amount in minor units' });
  }
}

function checkIdempotencyKey(problems: FieldProblem[], key: string) {
  if (key.trim().length === 0) problems.push({ field: 'idempotencyKey', message: 'must not be empty' });
  else if (key.length > maxIdempotencyKeyLength) {
    problems.push({ field: 'idempotencyKey', message: `must be at most ${maxIdempotencyKeyLength} characters` });
  }
}

/** Validates a createCharge request; throws BAD_USER_INPUT listing every problem, before anything is written. */
export function validateCreateCharge(input: CreateChargeInput, idempotencyKey: string): void {
  const problems: FieldProblem[] = [];
  if (input.cardId.length === 0 || input.cardId.length > 64) problems.push({ field: 'input.cardId', message: 'is not a card id' });
  checkAmount(problems, 'input.amount', input.amount);
  if (!/^[A-Z]{3}$/.test(input.currency) || !knownCurrencies.has(input.currency)) {
    problems.push({ field: 'input.currency', message: 'must be an ISO-4217 currency code such as USD' });
  }
  if (input.description != null && input.description.length > maxDescriptionLength) {
    problems.push({ field: 'input.description', message: `must be at most ${maxDescriptionLength} characters` });
  }
  checkIdempotencyKey(problems, idempotencyKey);
  if (problems.length > 0) throw new BadUserInputError(problems);
}

export function validateRefund(chargeId: string, amount: number | null | undefined, idempotencyKey: string): void {
  const problems: FieldProblem[] = [];
  if (chargeId.length === 0 || chargeId.length > 64) problems.push({ field: 'id', message: 'is not a charge id' });
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
