import { cards, type Database } from '@ghostpay/db';
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
 * size.
 */
export async function updateCardsInBatches(
  db: Database,
  set: PgUpdateSetSource<typeof cards>,
  due: SQL,
  batchSize: number,
): Promise<number> {
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new Error(`batch size must be a whole number ≥ 1, got ${batchSize}`);
  let changed = 0;
  for (;;) {
    const batch = await db
      .update(cards)
      .set(set)
      .where(sql`${cards.id} in (select id from ${cards} where ${due} limit ${batchSize} for update skip locked)`)
      .returning({ id: cards.id });
    changed += batch.length;
    if (batch.length < batchSize) return changed;
  }
}
