import { awaitingSettlement, charges, clockAfterLock, type Database, pgErrorCode } from '@ghostpay/db';
import { and, asc, getTableColumns, isNull, lte, sql } from 'drizzle-orm';
import { recordChargeEvents } from './charge-events.ts';

export interface SettleChargesOptions {
  /** A charge settles once it has been authorized this long. */
  delayMs: number;
  /** Charges per transaction. */
  batchSize: number;
  /**
   * Charges not to settle: the ones a pass found it cannot (see {@link settleAllDue}). Kept by
   * the caller across passes (the service keeps one per process).
   */
  unsettleable?: ReadonlyMap<string, unknown>;
}

/** When a charge must have been authorized to be due now: the database's `now()` less the settlement delay. */
function dueBefore(delayMs: number) {
  return sql`now() - make_interval(secs => ${delayMs / 1000})`;
}

/**
 * Due for settlement: awaiting it (`awaitingSettlement`, the condition of the partial index
 * `charges_settlement_due_idx`) and authorized at least `delayMs` ago. What the workers select
 * by and what the backlog counts.
 */
function dueForSettlement(delayMs: number) {
  return and(awaitingSettlement(charges), lte(charges.authorizedAt, dueBefore(delayMs)));
}

/** A batch that failed, with the charges it had claimed (its transaction rolled back). */
class SettlementBatchError extends Error {
  readonly chargeIds: readonly string[];
  constructor(chargeIds: readonly string[], options: { cause: unknown }) {
    super('settlement batch failed', options);
    this.chargeIds = chargeIds;
  }
}

/**
 * Whether a batch failed because of what one of its rows holds (a check, a foreign key, a
 * value out of range), which no retry changes, rather than because of the database's state
 * (a lost connection, a timeout): SQLSTATE classes 22 (data exception) and 23 (integrity
 * constraint violation).
 */
function isRowError(error: unknown): boolean {
  const code = pgErrorCode(error);
  return code !== undefined && (code.startsWith('22') || code.startsWith('23'));
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
 * the batch size (the update takes the ids as one array, and so does the select the charges
 * to pass over), so each connection prepares them once.
 *
 * A settlement is stamped (`settled_at`, `updated_at`) with one clock reading taken by the
 * update, once the batch's rows are ours, not with the transaction's `now()`: a refund that
 * committed after the transaction began but before its select reached the charge is settled
 * over (its event comes first), and must not look later than the settlement.
 *
 * An AUTHORIZED charge becomes SETTLED. A charge partially refunded before settlement keeps
 * its PARTIALLY_REFUNDED status but gets `settledAt` (its remainder is captured); a fully
 * refunded authorization was a void and never settles.
 */
export async function settleDueCharges(db: Database, options: SettleChargesOptions): Promise<number> {
  let claimed: string[] = [];
  try {
    return await db.transaction(async (tx) => {
      const passOver = [...(options.unsettleable?.keys() ?? [])];
      const due = await tx
        .select({ id: charges.id })
        .from(charges)
        .where(and(dueForSettlement(options.delayMs), sql`${charges.id} <> all(${sql.param(passOver)}::text[])`))
        .orderBy(asc(charges.authorizedAt))
        .limit(options.batchSize)
        .for('update', { skipLocked: true });
      if (due.length === 0) return 0;
      claimed = due.map((row) => row.id);
      // One reading for the batch (a volatile CTE is computed once), at the precision the events hold.
      const clock = tx.$with('clock', { at: sql<Date>`at`.as('at') }).as(sql`select ${clockAfterLock('milliseconds')} as at`);
      const settled = await tx
        .with(clock)
        .update(charges)
        .set({
          status: sql`case when ${charges.status} = 'AUTHORIZED' then 'SETTLED' else ${charges.status} end`,
          settledAt: sql`${clock.at}`,
          updatedAt: sql`${clock.at}`,
        })
        .from(clock)
        .where(and(sql`${charges.id} = any(${sql.param(claimed)}::text[])`, isNull(charges.settledAt)))
        .returning(getTableColumns(charges));
      await recordChargeEvents(tx, settled);
      return settled.length;
    });
  } catch (error) {
    if (claimed.length > 0 && isRowError(error)) throw new SettlementBatchError(claimed, { cause: error });
    throw error;
  }
}

export interface SettleAllDueOptions extends SettleChargesOptions {
  /** Batches per call, so one run stays bounded. @default 20 */
  maxBatches?: number;
  /**
   * The charges found unsettleable, with why; charges in it are passed over. Give the same map to
   * every pass (the service keeps one per process) so each is tried once. @default a new map per call
   */
  unsettleable?: Map<string, unknown>;
  /** Told of each charge found unsettleable (once per map), e.g. to log it. */
  onUnsettleable?: (chargeId: string, error: unknown) => void;
}

/**
 * Settles batches until none is full, at most `maxBatches` per call.
 *
 * A charge the database refuses to settle (a row that breaks a check, as one left NOT VALID by
 * `migrate` on an upgraded database can) must not hold up every other: due charges are taken
 * oldest first, so it would be in the first batch of every pass of every replica, and settlement
 * would stop for all. A batch failing that way is retried one charge per transaction; the charge
 * that fails alone is added to `unsettleable` (and reported), passed over from then on, and the
 * pass goes on. Any other failure (connection, timeout) ends the pass as before: the next retries.
 */
export async function settleAllDue(db: Database, options: SettleAllDueOptions): Promise<number> {
  const unsettleable = options.unsettleable ?? new Map<string, unknown>();
  const settle = (batchSize: number) => settleDueCharges(db, { delayMs: options.delayMs, batchSize, unsettleable });
  let total = 0;
  for (let batch = 0; batch < (options.maxBatches ?? 20); batch++) {
    let settled: number;
    try {
      settled = await settle(options.batchSize);
    } catch (error) {
      if (!(error instanceof SettlementBatchError)) throw error;
      // As many single-charge batches as the failed one held: each takes the oldest due charge
      // not passed over, so every charge of the failed batch is settled or set aside.
      for (let single = 0; single < error.chargeIds.length; single++) {
        try {
          const one = await settle(1);
          if (one === 0) break;
          total += one;
        } catch (alone) {
          if (!(alone instanceof SettlementBatchError)) throw alone;
          const [chargeId] = alone.chargeIds;
          if (chargeId === undefined) throw alone;
          unsettleable.set(chargeId, alone.cause);
          options.onUnsettleable?.(chargeId, alone.cause);
        }
      }
      continue;
    }
    total += settled;
    if (settled < options.batchSize) break;
  }
  return total;
}

export interface SettlementBacklog {
  /** Charges due for settlement (authorized at least `delayMs` ago) and not settled. */
  due: number;
  /** How long the oldest of them has been due, in seconds (0 when none is). */
  oldestDueSeconds: number;
}

/**
 * What settlement has yet to do, by the database's clock: the due charges not settled and how
 * long the oldest has waited past its delay. One statement over the settlement partial index
 * (`awaitingSettlement`, the condition the workers select by), so it reads only unsettled
 * charges. The service reads it after each settlement pass for its gauges: a backlog that grows,
 * or an oldest charge that keeps waiting, is settlement stalled or behind.
 */
export async function settlementBacklog(db: Database, delayMs: number): Promise<SettlementBacklog> {
  const [row] = await db
    .select({
      due: sql<number>`count(*)::int`,
      oldestDueSeconds: sql<number>`coalesce(extract(epoch from ${dueBefore(delayMs)} - min(${charges.authorizedAt})), 0)::float8`,
    })
    .from(charges)
    .where(dueForSettlement(delayMs));
  return { due: row?.due ?? 0, oldestDueSeconds: Math.max(0, row?.oldestDueSeconds ?? 0) };
}
