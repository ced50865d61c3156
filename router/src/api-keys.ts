import { apiKeys, type DatabaseHandle } from '@ghostpay/db';
import { checkingPrincipals, ErrorCode, GhostPayError, type JwtVerifier } from '@ghostpay/platform';
import { eq } from 'drizzle-orm';

/** What the router needs to know of a token's API key (`auth.api_keys`). */
export interface ApiKeyRecord {
  /** The key's own per-minute limit; undefined for the default. */
  rateLimitPerMinute?: number;
  /** Revoked in auth: its tokens, though signed and unexpired, are refused. */
  revoked: boolean;
}

/** An API key's record by id, or undefined when it is unknown or cannot be read now. */
export type ApiKeyLookup = (apiKeyId: string) => Promise<ApiKeyRecord | undefined>;

/**
 * Reads `auth.api_keys` (per-key limit, revocation), cached for `ttlMs` so the database sees at
 * most one lookup per key per TTL per replica. A failed lookup answers undefined (default
 * limit, not revoked: the request is not failed for it) and is retried after the TTL.
 */
export function createApiKeyLookup(database: DatabaseHandle, options: { ttlMs?: number; maxEntries?: number } = {}): ApiKeyLookup {
  const ttlMs = options.ttlMs ?? 60_000;
  const maxEntries = options.maxEntries ?? 100_000;
  const cache = new Map<string, { value: ApiKeyRecord | undefined; expires: number }>();
  const inFlight = new Map<string, Promise<ApiKeyRecord | undefined>>();
  return async (apiKeyId) => {
    const hit = cache.get(apiKeyId);
    if (hit && hit.expires > Date.now()) return hit.value;
    let pending = inFlight.get(apiKeyId);
    if (!pending) {
      pending = database.db
        .select({ limit: apiKeys.rateLimitPerMinute, revokedAt: apiKeys.revokedAt })
        .from(apiKeys)
        .where(eq(apiKeys.id, apiKeyId))
        .then(
          (rows): ApiKeyRecord | undefined =>
            rows[0] ? { rateLimitPerMinute: rows[0].limit ?? undefined, revoked: rows[0].revokedAt !== null } : undefined,
          () => undefined,
        )
        .then((value) => {
          if (cache.size >= maxEntries) cache.clear();
          cache.set(apiKeyId, { value, expires: Date.now() + ttlMs });
          inFlight.delete(apiKeyId);
          return value;
        });
      inFlight.set(apiKeyId, pending);
    }
    return pending;
  };
}

/**
 * The refusal for tokens of an API key auth has revoked (undefined while it is not, or the lookup
 * does not know it): what `refusingRevokedKeys` throws at every verification, and what ends the
 * open subscriptions of that key when the subscription gateway checks them (`checkApiKey`).
 */
export function revokedKeyRefusal(lookup: ApiKeyLookup): (apiKeyId: string) => Promise<GhostPayError | undefined> {
  return async (apiKeyId) =>
    (await lookup(apiKeyId))?.revoked
      ? new GhostPayError(ErrorCode.UNAUTHENTICATED, 'The API key of this token has been revoked')
      : undefined;
}

/**
 * The verifier the router uses everywhere (POST/GET /graphql, WebSocket and SSE subscriptions,
 * their per-event queries): a token whose API key auth has revoked is refused as
 * UNAUTHENTICATED once the lookup sees it (within its TTL), instead of staying good until it
 * expires.
 */
export function refusingRevokedKeys(verifier: JwtVerifier, lookup: ApiKeyLookup): JwtVerifier {
  const refusal = revokedKeyRefusal(lookup);
  return checkingPrincipals(verifier, async (principal) => {
    const refused = await refusal(principal.apiKeyId);
    if (refused) throw refused;
  });
}
