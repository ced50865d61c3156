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
