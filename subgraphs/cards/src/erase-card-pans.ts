import type { Database } from '@ghostpay/db';
import { sql } from 'drizzle-orm';
import { updateCardsInBatches } from './update-cards-in-batches.ts';

/** Cards one batch of `eraseCardPans` erases at most (the prunes' `deleteInBatches` size). */
export const defaultEraseBatchSize = 5_000;

/**
 * PAN retention (PCI DSS: keep cardholder data no longer than needed): erases the encrypted PAN of
 * every card that left ACTIVE more than `retentionDays` ago (USED: `used_at`, CANCELED:
 * `canceled_at`, EXPIRED: `expires_at`), by the database's clock. Only an ACTIVE card reveals, so
 * nothing reads such a PAN any more. Kept: `pan_fingerprint` (the unique index still keeps the
 * number from being issued again, and a dispute naming the PAN still finds its card), `bin`,
 * `last4`, the expiry and everything else the `Card` type shows. Returns the number erased.
 *
 * `batchSize` cards per statement, each its own short transaction; a short batch ends the call.
 * The rows are chosen and locked by a subselect (`for update skip locked`): a row another
 * transaction holds (a re-encryption batch, another replica's pass) is left for the next pass,
 * and a row is judged after it is locked, on its latest version. An ACTIVE card is never erased
 * (the condition says so, and `cards_active_has_pan`, migration 0004, refuses it). The condition
 * is the predicate of `cards_pan_retention_idx`, so a pass reads only the cards still to erase.
 * Idempotent; safe to run from several replicas.
 */
export async function eraseCardPans(db: Database, retentionDays: number, batchSize = defaultEraseBatchSize): Promise<number> {
  if (!Number.isInteger(retentionDays) || retentionDays < 0)
    throw new Error(`retention must be a whole number of days ≥ 0, got ${retentionDays}`);
  return updateCardsInBatches(
    db,
    { panCiphertext: null },
    sql`pan_ciphertext is not null and status <> 'ACTIVE' and coalesce(used_at, canceled_at, expires_at) <= now() - make_interval(days => ${retentionDays})`,
    batchSize,
  );
}
