import { cardIdempotencyKeys, type Database, deleteInBatches } from '@ghostpay/db';
import { createPeriodicJob, type Logger, type PeriodicJob } from '@ghostpay/platform';
import { lt, sql } from 'drizzle-orm';
import { eraseCardPans } from './erase-card-pans.ts';
import { expireCards } from './expire-cards.ts';
import { pruneRevealCounters } from './reveal-rate-limit-store.ts';

/** What one housekeeping pass changed. */
export interface HousekeepingResult {
  /** ACTIVE cards past `expires_at`, now EXPIRED. */
  expired: number;
  /** Encrypted PANs of cards that left ACTIVE more than the PAN retention ago, now erased. */
  pansErased: number;
  /** Reveal rate-limit counters of windows that have ended. */
  revealCountersPruned: number;
  /** Issuance idempotency keys older than the retention. */
  idempotencyKeysPruned: number;
}

/**
 * Deletes issuance idempotency keys created more than `retentionHours` ago, by the database's
 * clock (which stamped them), in batches. A retry with a pruned key is a new request (like
 * Stripe's keys, which expire after 24 hours): keep the retention longer than any client retries.
 */
export function pruneCardIdempotencyKeys(db: Database, retentionHours: number, batchSize?: number): Promise<number> {
  return deleteInBatches(
    db,
    cardIdempotencyKeys,
    lt(cardIdempotencyKeys.createdAt, sql`now() - make_interval(hours => ${retentionHours})`),
    batchSize,
  );
}

/** What the housekeeping keeps for how long. */
export interface HousekeepingOptions {
  revealWindowMs: number;
  idempotencyRetentionHours: number;
  /** Days a card's encrypted PAN is kept after the card left ACTIVE (`CARD_PAN_RETENTION_DAYS`). */
  panRetentionDays: number;
}

/**
 * A housekeeping pass in which at least one step failed (`errors`, one per failed step, in step
 * order). The other steps ran all the same: `result` holds their counts (0 for a failed step).
 */
export class HousekeepingPassError extends AggregateError {
  readonly result: HousekeepingResult;
  readonly failedSteps: (keyof HousekeepingResult)[];
  constructor(result: HousekeepingResult, failures: { step: keyof HousekeepingResult; error: unknown }[]) {
    super(
      failures.map((failure) => failure.error),
      `cards housekeeping: ${failures.map((failure) => failure.step).join(', ')} failed; the other steps ran`,
    );
    this.name = 'HousekeepingPassError';
    this.result = result;
    this.failedSteps = failures.map((failure) => failure.step);
  }
}

/**
 * One pass of the cards service's housekeeping: sweep expired cards to EXPIRED, erase the PANs of
 * cards that left ACTIVE longer than the PAN retention ago (after the sweep, so a card expired long
 * ago but still stored ACTIVE is erased in the same pass), drop reveal counters of windows that
 * have ended, drop idempotency keys past their retention. Each step
 * works in bounded batches (one short transaction each), is idempotent and safe from several
 * replicas at once. Every step judges time on the database's clock, never this server's: the
 * rows were stamped by it, and replicas' clocks need not agree with it.
 *
 * A step that fails (a statement timeout on a large backlog, a lost connection) does not stop the
 * ones after it: each runs on its own, and the pass then throws `HousekeepingPassError` with every
 * failure and the other steps' counts. Before, a sweep failing on every pass (a seq scan past the
 * statement timeout) meant no PAN was ever erased: the retention is a compliance duty of its own.
 * Batches committed before a failure stay; the next pass continues.
 */
export async function runCardsHousekeeping(db: Database, options: HousekeepingOptions): Promise<HousekeepingResult> {
  const steps: [keyof HousekeepingResult, () => Promise<number>][] = [
    ['expired', () => expireCards(db)],
    ['pansErased', () => eraseCardPans(db, options.panRetentionDays)],
    // A window that started more than one window ago has ended: nothing counts against it any more.
    ['revealCountersPruned', () => pruneRevealCounters(db, options.revealWindowMs)],
    ['idempotencyKeysPruned', () => pruneCardIdempotencyKeys(db, options.idempotencyRetentionHours)],
  ];
  const result: HousekeepingResult = { expired: 0, pansErased: 0, revealCountersPruned: 0, idempotencyKeysPruned: 0 };
  const failures: { step: keyof HousekeepingResult; error: unknown }[] = [];
  for (const [step, run] of steps) {
    try {
      result[step] = await run();
    } catch (error) {
      failures.push({ step, error });
    }
  }
  if (failures.length > 0) throw new HousekeepingPassError(result, failures);
  return result;
}

/** The periodic job that runs `runCardsHousekeeping` every `intervalMs` (never overlapping); its run returns the rows changed. */
export function createCardsHousekeeping(options: HousekeepingOptions & { db: Database; logger: Logger; intervalMs: number }): PeriodicJob {
  return createPeriodicJob({
    name: 'cards-housekeeping',
    intervalMs: options.intervalMs,
    logger: options.logger,
    run: async () => {
      const logged = (result: HousekeepingResult) => {
        const changed = result.expired + result.pansErased + result.revealCountersPruned + result.idempotencyKeysPruned;
        if (changed > 0) options.logger.info(result, 'cards housekeeping');
        return changed;
      };
      try {
        return logged(await runCardsHousekeeping(options.db, options));
      } catch (error) {
        // What the other steps did is logged too; the failure itself is the job's to log.
        if (error instanceof HousekeepingPassError) logged(error.result);
        throw error;
      }
    },
  });
}
