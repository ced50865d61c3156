export interface FailedExchangeLimiterOptions {
  /** Failures allowed per identity within the window. */
  limit: number;
  windowMs: number;
  /** Identities tracked at most; the least recently failed are forgotten first. @default 10000 */
  maxTracked?: number;
  now?: () => number;
}

/**
 * An in-memory sliding-window counter of failed token exchanges per identity (an API key
 * prefix or a client address). Only failures count; a success does not reset the window, so
 * an attacker cannot interleave a valid key to keep guessing. The map is bounded so random
 * identities cannot exhaust memory. Per process: with N replicas an attacker gets N× the
 * budget, which still keeps guessing a 256-bit secret hopeless; the limit is there to stop
 * noisy scanning and log spam, not to be the only defence.
 *
 * `recordFailure` both counts and decides: guesses sent at once all pass a check made before
 * their lookups, so the answer to a failed guess is settled when its failure is counted. Only
 * the first `limit` failures in a window are counted and may be told UNAUTHENTICATED; the rest
 * answer RATE_LIMITED like any attempt over the limit.
 */
export function createFailedExchangeLimiter(options: FailedExchangeLimiterOptions) {
  const { limit, windowMs, maxTracked = 10_000, now = Date.now } = options;
  // Map iteration order is insertion order: re-inserting on each failure keeps it LRU.
  const failures = new Map<string, number[]>();

  const recent = (identity: string, at: number): number[] => {
    const list = failures.get(identity);
    if (!list) return [];
    const kept = list.filter((time) => time > at - windowMs);
    if (kept.length === 0) failures.delete(identity);
    else if (kept.length !== list.length) failures.set(identity, kept);
    return kept;
  };
  /** Seconds until the oldest failure that keeps `list` at the limit leaves the window, or 0 below the limit. */
  const waitFor = (list: number[], at: number): number => {
    if (list.length < limit) return 0;
    const oldestInWindow = list[list.length - limit]!;
    return Math.max(1, Math.ceil((oldestInWindow + windowMs - at) / 1000));
  };

  return {
    /** Seconds until another attempt is allowed, or 0 when the identity may try now. */
    retryAfterSeconds(identity: string): number {
      const at = now();
      return waitFor(recent(identity, at), at);
    },
    /**
     * Counts a failure when the identity is under its limit and returns 0: the caller may answer
     * UNAUTHENTICATED. At the limit nothing is counted and the seconds to wait are returned: the
     * caller must answer RATE_LIMITED, whatever the attempt was.
     */
    recordFailure(identity: string): number {
      const at = now();
      const list = recent(identity, at);
      const wait = waitFor(list, at);
      if (wait > 0) return wait;
      failures.delete(identity);
      failures.set(identity, [...list, at]);
      while (failures.size > maxTracked) {
        const oldest = failures.keys().next().value;
        if (oldest === undefined) break;
        failures.delete(oldest);
      }
      return 0;
    },
  };
}

export type FailedExchangeLimiter = ReturnType<typeof createFailedExchangeLimiter>;
