/**
 * Connection options for a Redis that holds shared limits (the router's rate limits and
 * subscription slots, auth's failed-exchange limits), where every caller has a local fallback:
 * commands fail fast while Redis is unreachable (no offline queue, no retries, a timeout), so a
 * request is decided locally instead of queueing behind a dead store, and the client keeps
 * reconnecting (every 200 ms more, at most 2 s apart). Plain ioredis options: spread them into
 * the `RedisOptions` a caller adds its own to.
 */
export function failFastRedisOptions(commandTimeoutMs: number) {
  return {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    commandTimeout: commandTimeoutMs,
    retryStrategy: (attempt: number) => Math.min(attempt * 200, 2_000),
  };
}
