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

  return {
    /** Seconds until another attempt is allowed, or 0 when the identity may try now. */
    retryAfterSeconds(identity: string): number {
      const at = now();
      const list = recent(identity, at);
      if (list.length < limit) return 0;
      const oldestInWindow = list[list.length - limit]!;
      return Math.max(1, Math.ceil((oldestInWindow + windowMs - at) / 1000));
    },
    recordFailure(identity: string): void {
      const at = now();
      const list = recent(identity, at);
      failures.delete(identity);
      // Keep at most `limit` timestamps: older ones cannot change the answer.
      failures.set(identity, [...list.slice(-(limit - 1)), at]);
      while (failures.size > maxTracked) {
        const oldest = failures.keys().next().value;
        if (oldest === undefined) break;
        failures.delete(oldest);
      }
    },
  };
}

export type FailedExchangeLimiter = ReturnType<typeof createFailedExchangeLimiter>;
