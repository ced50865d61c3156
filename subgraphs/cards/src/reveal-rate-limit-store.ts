import { type Database, deleteInBatches, revealCounters } from '@ghostpay/db';
import { lt, sql } from 'drizzle-orm';
import type { Identity, Store } from 'graphql-rate-limit';

export interface PostgresRateLimitStoreOptions {
  db: Database;
  /** The window of the `@rateLimit` directive this store serves (fixed windows aligned to the epoch). */
  windowMs: number;
  /**
   * The directive's `max`. The limiter only compares the earlier calls against it, so the
   * store hands over at most `max` of them, however many attempts the window has counted.
   */
  max: number;
  /** Clock, for tests. @default Date.now */
  now?: () => number;
}

/**
 * A graphql-rate-limit `Store` whose counting is one atomic PostgreSQL statement.
 *
 * The library's limiter reads the identity's timestamps (`getForIdentity`), decides, then
 * writes them back (`setForIdentity`). With its in-memory or Redis stores, two replicas (or
 * two concurrent requests) both read N, both pass, and both write N+1: the limit leaks. Here
 * `getForIdentity` itself claims a slot — `insert ... on conflict do update set count =
 * count + 1 returning count` on `cards.reveal_counters` — and reports the calls before this
 * one, so every concurrent caller sees a distinct count and exactly `max` pass per window,
 * on any number of replicas. `setForIdentity` is then a no-op.
 *
 * Consequences, documented in the README: windows are fixed (aligned to the epoch), not
 * sliding; every attempt counts, including rejected ones (`uncountRejected` and `readOnly`
 * are not supported — the safer policy for PAN reveals).
 */
export function createPostgresRateLimitStore(options: PostgresRateLimitStoreOptions): Store & { windowEnd(): number } {
  const now = options.now ?? Date.now;
  const windowStartOf = (t: number) => t - (t % options.windowMs);
  return {
    async getForIdentity(identity: Identity): Promise<readonly number[]> {
      const t = now();
      const windowStart = new Date(windowStartOf(t));
      const actorId = `${identity.contextIdentity}|${identity.fieldIdentity}`;
      const [row] = await options.db
        .insert(revealCounters)
        .values({ actorId, windowStart, count: 1 })
        .onConflictDoUpdate({
          target: [revealCounters.actorId, revealCounters.windowStart],
          set: { count: sql`${revealCounters.count} + 1` },
        })
        .returning({ count: revealCounters.count });
      // The limiter counts these plus the current call: `count - 1` earlier calls, stamped
      // "now" so its sliding-window filter keeps them all. Refused attempts count too, so a
      // caller can drive `count` into the millions within a window: an array that long, built
      // and filtered per attempt, would make each refusal cost O(count). Clamped to `max`, the
      // limiter's answer is the same (max earlier calls + this one > max: refused) in O(max).
      return new Array<number>(Math.min(options.max, Math.max(0, row!.count - 1))).fill(t);
    },
    setForIdentity(): void {},
    windowEnd: () => windowStartOf(now()) + options.windowMs,
  };
}

/** Deletes counters of windows that started before `before` (for a periodic job), in batches; returns how many. */
export function pruneRevealCounters(db: Database, before: Date, batchSize?: number): Promise<number> {
  return deleteInBatches(db, revealCounters, lt(revealCounters.windowStart, before), batchSize);
}
