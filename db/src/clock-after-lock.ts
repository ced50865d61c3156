import { type SQL, sql } from 'drizzle-orm';

/**
 * The moment of a change to rows the statement has locked: the database's clock, read once the
 * lock is granted. For the writers that stamp (or judge expiry by) the time they took a row: a
 * cancel, an authorization, a refund, a settlement.
 *
 * Why the clock and not `now()`: `now()` is the transaction's start, before any wait for the row
 * (another writer holding it, a lock timeout's worth). Judged by it, a card that expired during
 * the wait would still be taken; stamped with it, a change would look earlier than one that
 * committed before it (a refund settled over, a cancel before the charge it waited for).
 *
 * The expression alone does not make the reading come after the lock; where it is written does:
 *
 * - In the projection of a query over the locking select, as a subquery
 *   (`select id, <clock> as at from (select … for update) as locked`) or a CTE
 *   (`select id, <clock> as at from locked`). A subquery with a locking clause is never pulled up,
 *   so its rows come out locked and the projection above it runs after. Not in the locking select's
 *   own projection, nor in its `where`: those are evaluated before the lock is granted, and again
 *   after the wait only when the other writer updated the row (not when it only locked it).
 * - Or in a later statement of the transaction that took the lock (a settlement batch claimed by
 *   one select and updated by the next).
 * - Once: `clock_timestamp()` is volatile, so every occurrence is another reading. Read it in one
 *   place (a CTE, which PostgreSQL materializes since it is volatile, or one column of the locking
 *   read) and use that reading for every stamp and every comparison of the change.
 *
 * `milliseconds` truncates the reading to what a JavaScript `Date` and a JSON event hold, for a
 * stamp that is also returned or recorded (a refund's, a settlement's); the full reading is for
 * a stamp only the database keeps and for comparisons (expiry).
 */
export function clockAfterLock(precision?: 'milliseconds'): SQL<Date> {
  return precision === 'milliseconds' ? sql<Date>`date_trunc('milliseconds', clock_timestamp())` : sql<Date>`clock_timestamp()`;
}
