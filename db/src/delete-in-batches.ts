import { type SQL, sql } from 'drizzle-orm';
import type { PgTable } from 'drizzle-orm/pg-core';
import type { Database } from './client.ts';
import { inBatches } from './in-batches.ts';

/** Rows one statement of `deleteInBatches` deletes at most. */
export const defaultDeleteBatchSize = 5_000;

/**
 * Deletes every row of `table` matching `where`, `batchSize` rows per statement, and returns
 * how many it deleted. For the periodic prunes (idempotency keys, reveal counters): a day of
 * keys at a few hundred charges a second is millions of rows, which one `DELETE … RETURNING`
 * would lock, write and send back to Node in one go. Each batch is its own statement (its own
 * transaction; the loop is `inBatches`), so locks are short and memory stays bounded.
 *
 * The batch is chosen by `ctid` from a subselect, PostgreSQL's idiom for a `DELETE … LIMIT`.
 * A replica pruning at the same time deletes some of the same rows first; a batch that comes
 * back short ends the call, and the next run takes the rest.
 */
export function deleteInBatches(db: Database, table: PgTable, where: SQL, batchSize = defaultDeleteBatchSize): Promise<number> {
  return inBatches(batchSize, async (limit) => {
    const batch = await db
      .delete(table)
      .where(sql`ctid = any(array(select ctid from ${table} where ${where} limit ${limit}))`)
      .returning({ one: sql<number>`1` });
    return batch.length;
  });
}
