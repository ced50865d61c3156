import { awaitingSettlement, charges, type Database } from '@ghostpay/db';
import { and, asc, isNull, lte, sql } from 'drizzle-orm';
import { recordChargeEvents } from './charge-events.ts';

export interface SettleChargesOptions {
  /** A charge settles once it has been authorized this long. */
  delayMs: number;
  /** Charges per transaction. */
  batchSize: number;
}

/**
 * Settles one batch of due charges in one transaction and returns how many. Rows are
 * claimed with `FOR UPDATE SKIP LOCKED`, so any number of workers (replicas) can run at
 * once: each due charge is settled by exactly one of them, and a worker never waits on
 * another's batch. Each settlement writes its event + NOTIFY in the same transaction (one
 * statement for the batch's events).
 *
 * The select repeats the condition of the partial index `charges_settlement_due_idx`
 * (`awaitingSettlement`) and orders by its column, so a pass reads only due charges, oldest
 * first, however many charges have settled before. Both statements have one text whatever
 * the batch size (the update takes the ids as one array), so each connection prepares them
 * once.
 *
 * An AUTHORIZED charge becomes SETTLED. A charge partially refunded before settlement keeps
 * its PARTIALLY_REFUNDED status but gets `settledAt` (its remainder is captured); a fully
 * refunded authorization was a void and never settles.
 */
export async function settleDueCharges(db: Database, options: SettleChargesOptions): Promise<number> {
  return db.transaction(async (tx) => {
    const due = await tx
      .select({ id: charges.id })
      .from(charges)
      .where(and(awaitingSettlement(charges), lte(charges.authorizedAt, sql`now() - make_interval(secs => ${options.delayMs / 1000})`)))
      .orderBy(asc(charges.authorizedAt))
      .limit(options.batchSize)
      .for('update', { skipLocked: true });
    if (due.length === 0) return 0;
    const settled = await tx
      .update(charges)
      .set({
        status: sql`case when ${charges.status} = 'AUTHORIZED' then 'SETTLED' else ${charges.status} end`,
        settledAt: sql`now()`,
        updatedAt: sql`now()`,
      })
      .where(and(sql`${charges.id} = any(${sql.param(due.map((row) => row.id))}::text[])`, isNull(charges.settledAt)))
      .returning();
    await recordChargeEvents(tx, settled);
    return settled.length;
  });
}

/** Settles batches until none is full, at most `maxBatches` per call so one run stays bounded. */
export async function settleAllDue(db: Database, options: SettleChargesOptions & { maxBatches?: number }): Promise<number> {
  let total = 0;
  for (let batch = 0; batch < (options.maxBatches ?? 20); batch++) {
    const settled = await settleDueCharges(db, options);
    total += settled;
    if (settled < options.batchSize) break;
  }
  return total;
}
