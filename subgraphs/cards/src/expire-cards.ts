import type { Database } from '@ghostpay/db';
import { sql } from 'drizzle-orm';
import { updateCardsInBatches } from './update-cards-in-batches.ts';

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
 * waited for: the next pass takes what is still due. The condition is what the partial index
 * `cards_expiry_due_idx` (migration 0005) serves: a pass reads the cards due, not the table.
 */
export async function expireCards(db: Database, batchSize = defaultExpireBatchSize): Promise<number> {
  return updateCardsInBatches(db, { status: 'EXPIRED' }, sql`status = 'ACTIVE' and expires_at <= now()`, batchSize);
}
