import { checkingPrincipals, type JwtVerifier, UnauthenticatedError } from '@ghostpay/platform';
import type { UserLookups } from './users.ts';

/** Whether an API key is revoked, as auth's verifier asks on every request that carries a token. */
export interface RevokedKeys {
  /** True when the key's row says revoked; false when it does not, is not there, or cannot be read now. */
  isRevoked(apiKeyId: string): Promise<boolean>;
  /** Drops what this process remembers of a key: its revocation here is refused at once. */
  forget(apiKeyId: string): void;
}

/**
 * Reads `revoked_at` of a token's API key through the loaders' prepared `id = $1` lookup,
 * remembered for `ttlMs` per key, so auth's database sees at most one such read per key per TTL
 * per replica, and concurrent requests of one key share one read. A failed read is not
 * remembered and refuses nothing: the request's own queries meet the same database.
 */
export function createRevokedKeys(
  lookups: Pick<UserLookups, 'apiKeysByIds'>,
  options: { ttlMs?: number; maxEntries?: number } = {},
): RevokedKeys {
  const ttlMs = options.ttlMs ?? 10_000;
  const maxEntries = options.maxEntries ?? 100_000;
  const cache = new Map<string, { revoked: boolean; expires: number }>();
  const inFlight = new Map<string, Promise<boolean>>();
  return {
    async isRevoked(apiKeyId) {
      const hit = cache.get(apiKeyId);
      if (hit && hit.expires > Date.now()) return hit.revoked;
      // PostgreSQL refuses a NUL byte in text: no row holds such an id.
      if (apiKeyId.includes('\u0000')) return false;
      let pending = inFlight.get(apiKeyId);
      if (!pending) {
        const read: Promise<boolean> = lookups
          .apiKeysByIds([apiKeyId], {})
          .then(
            ([row]) => {
              const revoked = row?.revokedAt != null;
              // Forgotten while it ran (revoked here meanwhile): what it read may predate the
              // revocation, so it answers its own callers but is not remembered.
              if (inFlight.get(apiKeyId) !== read) return revoked;
              if (cache.size >= maxEntries) cache.clear();
              cache.set(apiKeyId, { revoked, expires: Date.now() + ttlMs });
              return revoked;
            },
            () => false,
          )
          .finally(() => {
            if (inFlight.get(apiKeyId) === read) inFlight.delete(apiKeyId);
          });
        pending = read;
        inFlight.set(apiKeyId, read);
      }
      return pending;
    },
    forget(apiKeyId) {
      cache.delete(apiKeyId);
      // A read started before the revocation must neither be shared with later requests nor remembered.
      inFlight.delete(apiKeyId);
    },
  };
}

/**
 * Auth's verifier: a token whose API key has been revoked is UNAUTHENTICATED for every field,
 * reads included, within `createRevokedKeys`' TTL (at once on the replica that revoked it),
 * whether or not the router in front checks revocations itself (it does only with a database).
 */
export function refusingRevokedKeys(verifier: JwtVerifier, revokedKeys: RevokedKeys): JwtVerifier {
  return checkingPrincipals(verifier, async (principal) => {
    if (await revokedKeys.isRevoked(principal.apiKeyId))
      throw new UnauthenticatedError('The API key this token was issued for has been revoked');
  });
}
