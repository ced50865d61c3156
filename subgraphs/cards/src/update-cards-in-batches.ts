import { cards, type Database, inBatches } from '@ghostpay/db';
import type { SQL } from 'drizzle-orm';
import { sql } from 'drizzle-orm';
import type { PgUpdateSetSource } from 'drizzle-orm/pg-core';

/**
 * Applies `set` to every card `due` selects (a condition over the cards table's own columns),
 * `batchSize` cards per statement (its own short transaction), and returns how many it changed.
 * The housekeeping's bulk rewrites (`expireCards`, `eraseCardPans`) go through here.
 *
 * The batch is chosen and locked by a subselect (`for update skip locked`): a row another
 * transaction holds (a charge or cancel in flight, a re-encryption batch, another replica's pass)
 * is skipped, not waited for, and the next pass takes it if it is still due; a row is judged after
 * it is locked, on its latest version. A changed card must no longer be due, so each batch takes
 * the next ones, and a short batch ends the call. The same text whatever the batch holds (the ids
 * come from the subselect, not a list): a list of ids would be a new prepared statement per batch
 * size. The loop (and the check of `batchSize`) is db's `inBatches`, which `deleteInBatches` uses too.
 */
export function updateCardsInBatches(db: Database, set: PgUpdateSetSource<typeof cards>, due: SQL, batchSize: number): Promise<number> {
  return inBatches(batchSize, async (limit) => {
    const batch = await db
      .update(cards)
      .set(set)
      .where(sql`${cards.id} in (select id from ${cards} where ${due} limit ${limit} for update skip locked)`)
      .returning({ id: cards.id });
    return batch.length;
  });
}
