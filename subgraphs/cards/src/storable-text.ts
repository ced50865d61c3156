import { isLuhnValid } from './pan.ts';

/**
 * What PostgreSQL can store as given. It refuses U+0000 in text outright (the statement fails,
 * and the request used to answer INTERNAL_SERVER_ERROR; in an entity batch, every card of the
 * batch did), and node-postgres sends a lone UTF-16 surrogate (JSON allows `"\ud800"`) as
 * U+FFFD, so two different idempotency keys would be stored as one and the second request
 * answered with the first one's card. The other control characters (C0, DEL, C1) have no
 * business in an id or a key either: in logs and terminals they can forge lines.
 */
const controlCharacter = /\p{Cc}/u;

/** Why `value` cannot be an id or key as sent, or undefined when it can. */
export function unstorableReason(value: string): string | undefined {
  if (controlCharacter.test(value)) return 'must not contain control characters';
  if (!value.isWellFormed()) return 'must be valid Unicode text (no lone surrogates)';
  return undefined;
}

/**
 * Whether `id` can be an id we issued (1–100 characters PostgreSQL stores as given). Reads skip
 * the others as not found: no row has them.
 */
export function isPossibleId(id: string): boolean {
  return id.length > 0 && id.length <= 100 && unstorableReason(id) === undefined;
}

/**
 * Whether `key` holds what looks like a card number: 13–19 digits starting with a payment
 * network's major industry identifier (2–6) that pass Luhn (`isLuhnValid`), whole or in groups
 * split by single spaces or dashes, also with more groups after it. Idempotency keys are stored
 * in clear, so one holding a PAN is refused. The UUIDs in a key are skipped: about one random
 * UUID in 20,000 joins its digits across its dashes into such a run.
 */
export function keyContainsCardNumber(key: string): boolean {
  const text = key.replace(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/gi, '_');
  for (const run of text.matchAll(/\d+(?:[ -]\d+)*/g)) {
    const groups = run[0].split(/[ -]/);
    for (let first = 0; first < groups.length; first++) {
      let digits = '';
      for (let last = first; last < groups.length && digits.length <= 19; last++) {
        digits += groups[last];
        if (digits.length >= 13 && digits.length <= 19 && /^[2-6]/.test(digits) && isLuhnValid(digits)) return true;
      }
    }
  }
  return false;
}
