import { cards, type Database } from '@ghostpay/db';
import { and, asc, eq, gt, inArray, lte, sql } from 'drizzle-orm';

/** Cards one batch of `expireCards` sweeps at most (the prunes' `deleteInBatches` size). */
export const defaultExpireBatchSize = 5_000;

/**
 * Optional sweeper: rewrites ACTIVE cards past `expires_at` to EXPIRED, so the stored status
 * matches what readers already see (expiry is computed on read, and the charges subgraph's
 * conditional update checks `expires_at` itself; neither depends on this job). Returns the
 * number of cards swept. Idempotent; safe to run from several replicas.
 *
 * After a long outage the backlog can be every card issued in that time: it is swept
 * `batchSize` cards per transaction, walking the primary key (each batch starts after the last
 * id of the one before, so no batch rescans what an earlier one passed), and a short batch
 * ends the call. Rows another transaction holds (a charge or cancel in flight, another
 * replica's sweep) are skipped, not waited for: the next pass takes what is still due.
 */
export async function expireCards(db: Database, batchSize = defaultExpireBatchSize): Promise<number> {
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new Error(`batch size must be a whole number ≥ 1, got ${batchSize}`);
  const due = and(eq(cards.status, 'ACTIVE'), lte(cards.expiresAt, sql`now()`));
  let swept = 0;
  let afterId = '';
  for (;;) {
    const batch = await db.transaction(async (tx) => {
      const rows = await tx
        .select({ id: cards.id })
        .from(cards)
        .where(and(due, gt(cards.id, afterId)))
        .orderBy(asc(cards.id))
        .limit(batchSize)
        .for('update', { skipLocked: true });
      if (rows.length === 0) return rows;
      const ids = rows.map((row) => row.id);
      await tx.update(cards).set({ status: 'EXPIRED' }).where(inArray(cards.id, ids));
      return rows;
    });
    swept += batch.length;
    if (batch.length < batchSize) return swept;
    afterId = batch.at(-1)!.id;
  }
}
