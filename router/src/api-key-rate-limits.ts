import { apiKeys, type DatabaseHandle } from '@ghostpay/db';
import { eq } from 'drizzle-orm';

/** Returns an API key's own per-minute limit, or undefined for the default. */
export type RateLimitOverrides = (apiKeyId: string) => Promise<number | undefined>;

/**
 * Per-key limits read from `auth.api_keys.rate_limit_per_minute`, cached for `ttlMs` so the
 * database sees at most one lookup per key per TTL per replica. A failed lookup falls back
 * to the default limit (and is retried after the TTL) rather than failing the request.
 */
export function createApiKeyRateLimits(
  database: DatabaseHandle,
  options: { ttlMs?: number; maxEntries?: number } = {},
): RateLimitOverrides {
  const ttlMs = options.ttlMs ?? 60_000;
  const maxEntries = options.maxEntries ?? 100_000;
  const cache = new Map<string, { value: number | undefined; expires: number }>();
  const inFlight = new Map<string, Promise<number | undefined>>();
  return async (apiKeyId) => {
    const hit = cache.get(apiKeyId);
    if (hit && hit.expires > Date.now()) return hit.value;
    let pending = inFlight.get(apiKeyId);
    if (!pending) {
      pending = database.db
        .select({ limit: apiKeys.rateLimitPerMinute })
        .from(apiKeys)
        .where(eq(apiKeys.id, apiKeyId))
        .then(
          (rows) => rows[0]?.limit ?? undefined,
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
