import { type Database, deleteInBatches, revealCounters } from '@ghostpay/db';
import { lt, type SQL, sql } from 'drizzle-orm';
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
  /** This server's clock, for tests (windows are the database's; see `windowEnd`). @default Date.now */
  now?: () => number;
}

/**
 * The window `at` (a timestamptz expression) falls in: fixed windows of `windowMs` aligned to
 * the epoch, on the database's clock.
 */
function windowStartSql(windowMs: number, at: SQL): SQL {
  return sql`date_bin(make_interval(secs => ${windowMs / 1000}), ${at}, timestamptz '1970-01-01 00:00:00+00')`;
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
 * The window an attempt counts in is the database's (`now()` in the insert), not this
 * server's: replicas whose clocks disagree would otherwise count one caller's attempts in
 * different windows (a replica ahead starts the next window early, with a fresh `max`).
 * `windowEnd()` (for `retryAfter`) is that window's end, on this server's clock: the store
 * keeps the difference between the two clocks it saw at the last count.
 *
 * Consequences, documented in the README: windows are fixed (aligned to the epoch), not
 * sliding; every attempt counts, including rejected ones (`uncountRejected` and `readOnly`
 * are not supported — the safer policy for PAN reveals).
 */
export function createPostgresRateLimitStore(options: PostgresRateLimitStoreOptions): Store & { windowEnd(): number } {
  const now = options.now ?? Date.now;
  const windowStartOf = (t: number) => t - (t % options.windowMs);
  // The database's clock minus this server's, as of the last count (ms).
  let databaseOffsetMs = 0;
  return {
    async getForIdentity(identity: Identity): Promise<readonly number[]> {
      const t = now();
      const actorId = `${identity.contextIdentity}|${identity.fieldIdentity}`;
      const [row] = await options.db
        .insert(revealCounters)
        .values({ actorId, windowStart: windowStartSql(options.windowMs, sql`now()`), count: 1 })
        .onConflictDoUpdate({
          target: [revealCounters.actorId, revealCounters.windowStart],
          set: { count: sql`${revealCounters.count} + 1` },
        })
        .returning({ count: revealCounters.count, databaseNowMs: sql<string>`extract(epoch from now()) * 1000` });
      databaseOffsetMs = Number(row!.databaseNowMs) - t;
      // The limiter counts these plus the current call: `count - 1` earlier calls, stamped
      // "now" so its sliding-window filter keeps them all. Refused attempts count too, so a
      // caller can drive `count` into the millions within a window: an array that long, built
      // and filtered per attempt, would make each refusal cost O(count). Clamped to `max`, the
      // limiter's answer is the same (max earlier calls + this one > max: refused) in O(max).
      return new Array<number>(Math.min(options.max, Math.max(0, row!.count - 1))).fill(t);
    },
    setForIdentity(): void {},
    windowEnd: () => windowStartOf(now() + databaseOffsetMs) + options.windowMs - databaseOffsetMs,
  };
}

/**
 * Deletes counters of windows that ended before the database's `now()` (windows of `windowMs`:
 * those that started more than one window ago), for a periodic job, in batches; returns how
 * many. The database's clock, like the windows: a replica whose clock ran ahead would delete
 * the counter of a window still counting, and the caller would start over at 0.
 */
export function pruneRevealCounters(db: Database, windowMs: number, batchSize?: number): Promise<number> {
  return deleteInBatches(
    db,
    revealCounters,
    lt(revealCounters.windowStart, sql`now() - make_interval(secs => ${windowMs / 1000})`),
    batchSize,
  );
}
