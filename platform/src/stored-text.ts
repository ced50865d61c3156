import { luhnValid } from './request-event.ts';

/**
 * Checks for text a service stores as given (ids, idempotency keys, descriptions): what
 * PostgreSQL cannot store faithfully, and what looks like a card number, which must never be
 * stored in clear.
 */

/**
 * Control characters (C0, DEL, C1). PostgreSQL cannot store U+0000 in text or jsonb at all (the
 * statement fails); the others have no business in an id or a key, and in logs and terminals
 * they can forge lines or escape sequences.
 */
const controlCharacter = /\p{Cc}/u;
/** The same, except tab, line feed and carriage return, which free text such as a description may hold. */
const controlCharacterInText = /[^\P{Cc}\t\n\r]/u;

/**
 * Why a string cannot be stored as given, or undefined when it can. A lone UTF-16 surrogate (JSON
 * allows `"\ud800"`) would be stored as U+FFFD, so two different keys would become one.
 * `allowLineBreaks`: free text, where tab and line breaks are fine.
 */
export function unstorableReason(value: string, options: { allowLineBreaks?: boolean } = {}): string | undefined {
  if ((options.allowLineBreaks ? controlCharacterInText : controlCharacter).test(value)) {
    return options.allowLineBreaks
      ? 'must not contain control characters other than tab and line breaks'
      : 'must not contain control characters';
  }
  if (!value.isWellFormed()) return 'must be valid Unicode text (no lone surrogates)';
  return undefined;
}

/**
 * Whether `text` holds what looks like a card number: 13–19 digits starting with a payment
 * network's major industry identifier (2–6) that pass Luhn, written in one piece or in groups
 * split by single spaces or dashes as PANs are pasted ("4111 1111 1111 1111"), also when more
 * groups follow ("4111-1111-1111-1111-2027"). Stricter than `looksSecret` (any Luhn-valid 13–19
 * digit window), which is right for redacting output but would refuse ordinary input.
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
 * random UUID in 20,000), so a key is checked without the UUIDs it holds.
 */
const uuids = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/gi;

/**
 * `containsCardNumber` for an idempotency key: the UUIDs in it are skipped, so a UUID key, or one
 * built around a UUID (the REST bridge's own `bridge-<uuid>`), is never refused for its digits.
 */
export function keyContainsCardNumber(key: string): boolean {
  return containsCardNumber(key.replace(uuids, '_'));
}
