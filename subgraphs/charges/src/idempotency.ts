import { chargeIdempotencyKeys, type Transaction } from '@ghostpay/db';
import { IdempotencyKeyInUseError, IdempotencyKeyReusedError } from '@ghostpay/platform';
import { and, eq, lt, sql } from 'drizzle-orm';
import { type ChargeRow, type ChargeSnapshot, fromSnapshot, toSnapshot } from './charge-record.ts';
import { LOCK_NOT_AVAILABLE, pgErrorCode } from './pg-error.ts';

export type IdempotentOperation = 'create_charge' | 'refund_charge';

export interface IdempotencyScope {
  /** The caller's user id: keys are scoped per caller, so two merchants may use the same key. */
  principalId: string;
  operation: IdempotentOperation;
  key: string;
  /** sha256 of the canonical request (see requestFingerprint). */
  fingerprint: string;
}

export type IdempotencyClaim = { kind: 'claimed' } | { kind: 'replay'; charge: ChargeRow };

/**
 * Claims an idempotency key inside the transaction that performs the operation.
 *
 * The key row is inserted first (`on conflict do nothing`), so a concurrent duplicate
 * blocks on the primary key until the original transaction ends: if it committed, the
 * duplicate sees the completed row and replays it; if it rolled back (NOT_FOUND, an error),
 * the duplicate's insert goes through and it runs the operation itself. Either way there is
 * never a second charge. A duplicate waits at most `waitMs`, then gets IDEMPOTENCY_KEY_IN_USE.
 */
export async function claimIdempotencyKey(tx: Transaction, scope: IdempotencyScope, waitMs: number): Promise<IdempotencyClaim> {
  // SET cannot take parameters; waitMs is a validated integer from config.
  await tx.execute(sql.raw(`set local lock_timeout = '${Math.max(1, Math.floor(waitMs))}ms'`));
  let inserted: unknown[];
  try {
    inserted = await tx
      .insert(chargeIdempotencyKeys)
      .values({ ...scope, state: 'in_progress', lockedUntil: sql`now() + make_interval(secs => ${waitMs / 1000})` })
      .onConflictDoNothing()
      .returning({ key: chargeIdempotencyKeys.key });
  } catch (error) {
    if (pgErrorCode(error) === LOCK_NOT_AVAILABLE) throw new IdempotencyKeyInUseError();
    throw error;
  }
  // The wait bound is for the key only; the card and charge row locks that follow are short.
  await tx.execute(sql.raw(`set local lock_timeout = 0`));
  if (inserted.length === 1) return { kind: 'claimed' };

  const [existing] = await tx
    .select()
    .from(chargeIdempotencyKeys)
    .where(
      and(
        eq(chargeIdempotencyKeys.principalId, scope.principalId),
        eq(chargeIdempotencyKeys.operation, scope.operation),
        eq(chargeIdempotencyKeys.key, scope.key),
      ),
    );
  if (!existing) throw new IdempotencyKeyInUseError();
  if (existing.fingerprint !== scope.fingerprint) throw new IdempotencyKeyReusedError();
  if (existing.state !== 'completed' || !existing.response) throw new IdempotencyKeyInUseError();
  return { kind: 'replay', charge: fromSnapshot(existing.response as ChargeSnapshot) };
}

/** Stores the result to replay, in the same transaction as the state change it guards. */
export async function completeIdempotencyKey(tx: Transaction, scope: IdempotencyScope, charge: ChargeRow): Promise<void> {
  await tx
    .update(chargeIdempotencyKeys)
    .set({ state: 'completed', chargeId: charge.id, response: toSnapshot(charge), completedAt: sql`now()`, lockedUntil: null })
    .where(
      and(
        eq(chargeIdempotencyKeys.principalId, scope.principalId),
        eq(chargeIdempotencyKeys.operation, scope.operation),
        eq(chargeIdempotencyKeys.key, scope.key),
      ),
    );
}

/** Deletes keys older than the retention; returns how many. */
export async function pruneIdempotencyKeys(tx: Pick<Transaction, 'delete'>, retentionHours: number): Promise<number> {
  const deleted = await tx
    .delete(chargeIdempotencyKeys)
    .where(lt(chargeIdempotencyKeys.createdAt, sql`now() - make_interval(hours => ${retentionHours})`))
    .returning({ key: chargeIdempotencyKeys.key });
  return deleted.length;
}
