import { type SQL, sql } from 'drizzle-orm';
import type { PgTable } from 'drizzle-orm/pg-core';
import type { Database } from './client.ts';

/** Rows one statement of `deleteInBatches` deletes at most. */
export const defaultDeleteBatchSize = 5_000;

/**
 * Deletes every row of `table` matching `where`, `batchSize` rows per statement, and returns
 * how many it deleted. For the periodic prunes (idempotency keys, reveal counters): a day of
 * keys at a few hundred charges a second is millions of rows, which one `DELETE … RETURNING`
 * would lock, write and send back to Node in one go. Each batch is its own statement (its own
 * transaction), so locks are short and memory stays bounded.
 *
 * The batch is chosen by `ctid` from a subselect, PostgreSQL's idiom for a `DELETE … LIMIT`.
 * A replica pruning at the same time deletes some of the same rows first; a batch that comes
 * back short ends the call, and the next run takes the rest.
 */
export async function deleteInBatches(db: Database, table: PgTable, where: SQL, batchSize = defaultDeleteBatchSize): Promise<number> {
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new Error(`batch size must be a whole number ≥ 1, got ${batchSize}`);
  let deleted = 0;
  for (;;) {
    const batch = await db
      .delete(table)
      .where(sql`ctid = any(array(select ctid from ${table} where ${where} limit ${batchSize}))`)
      .returning({ one: sql<number>`1` });
    deleted += batch.length;
    if (batch.length < batchSize) return deleted;
  }
}
