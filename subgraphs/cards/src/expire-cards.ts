import { cards, type Database } from '@ghostpay/db';
import { sql } from 'drizzle-orm';

/** Cards one batch of `expireCards` sweeps at most (the prunes' `deleteInBatches` size). */
export const defaultExpireBatchSize = 5_000;

/**
 * Optional sweeper: rewrites ACTIVE cards past `expires_at` to EXPIRED, so the stored status
 * matches what readers already see (expiry is computed on read, and the charges subgraph's
 * conditional update checks `expires_at` itself; neither depends on this job). Returns the
 * number of cards swept. Idempotent; safe to run from several replicas.
 *
 * After a long outage the backlog can be every card issued in that time: it is swept
 * `batchSize` cards per statement (its own short transaction), and a short batch ends the
 * call. A swept card is no longer due, so each batch takes the next ones. Rows another
 * transaction holds (a charge or cancel in flight, another replica's sweep) are skipped, not
 * waited for: the next pass takes what is still due.
 */
export async function expireCards(db: Database, batchSize = defaultExpireBatchSize): Promise<number> {
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new Error(`batch size must be a whole number ≥ 1, got ${batchSize}`);
  let swept = 0;
  for (;;) {
    // The same text whatever the batch holds (the ids come from a subselect, not a list): a
    // list of ids would be a new prepared statement per batch size.
    const batch = await db
      .update(cards)
      .set({ status: 'EXPIRED' })
      .where(
        sql`${cards.id} in (select id from ${cards} where status = 'ACTIVE' and expires_at <= now() limit ${batchSize} for update skip locked)`,
      )
      .returning({ id: cards.id });
    swept += batch.length;
    if (batch.length < batchSize) return swept;
  }
}
