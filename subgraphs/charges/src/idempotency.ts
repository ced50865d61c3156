import { chargeIdempotencyKeys, type Database, deleteInBatches, LOCK_NOT_AVAILABLE, pgErrorCode, type Transaction } from '@ghostpay/db';
import { IdempotencyKeyInUseError, IdempotencyKeyReusedError, ServiceUnavailableError } from '@ghostpay/platform';
import { and, eq, lt, type SQL, sql } from 'drizzle-orm';
import { type ChargeRow, type ChargeSnapshot, fromSnapshot, toSnapshot } from './charge-record.ts';

export type IdempotentOperation = 'create_charge' | 'refund_charge';

export interface IdempotencyScope {
  /** The caller's user id: keys are scoped per caller, so two merchants may use the same key. */
  principalId: string;
  operation: IdempotentOperation;
  key: string;
  /** sha256 of the canonical request (see requestFingerprint). */
  fingerprint: string;
}

export type IdempotencyClaim =
  /** `now` is the transaction's `now()`: every timestamp the transaction writes, but an authorization's moment (`writeCharge`). */
  { kind: 'claimed'; now: Date } | { kind: 'replay'; charge: ChargeRow };

/**
 * Claims an idempotency key inside the transaction that performs the operation.
 *
 * The key row is inserted first (`on conflict do nothing`), so a concurrent duplicate
 * blocks on the primary key until the original transaction ends: if it committed, the
 * duplicate sees the completed row and replays it; if it rolled back (NOT_FOUND, an error),
 * the duplicate's insert goes through and it runs the operation itself. Either way there is
 * never a second charge. A duplicate waits at most `waitMs`, then gets IDEMPOTENCY_KEY_IN_USE.
 *
 * One round trip: the statement sets the transaction's `lock_timeout` to `waitMs` itself
 * (the SELECT feeding the insert runs before the insert can wait on a conflicting key). The
 * bound stays for the rest of the transaction, so no lock the operation takes afterwards
 * (a card or charge row another writer holds) can make it wait longer either; see
 * {@link lockTimeoutAfterClaim}.
 *
 * IDEMPOTENCY_KEY_IN_USE carries `retryAfter` = `waitMs` in whole seconds (see
 * {@link inUseRetryAfterSeconds}).
 */
export async function claimIdempotencyKey(tx: Transaction, scope: IdempotencyScope, waitMs: number): Promise<IdempotencyClaim> {
  const waitBound = `${Math.max(1, Math.floor(waitMs))}ms`;
  let inserted: { rows: Array<{ created_at: string | Date }> };
  try {
    inserted = (await tx.execute(sql`
      insert into ${chargeIdempotencyKeys} (principal_id, operation, key, fingerprint, state, locked_until)
      select ${scope.principalId}, ${scope.operation}, ${scope.key}, ${scope.fingerprint}, 'in_progress', now() + make_interval(secs => ${waitMs / 1000})
      from (select set_config('lock_timeout', ${waitBound}, true)) as wait_bound
      on conflict do nothing
      returning created_at
    `)) as unknown as typeof inserted;
  } catch (error) {
    if (pgErrorCode(error) === LOCK_NOT_AVAILABLE) throw new IdempotencyKeyInUseError(inUseRetryAfterSeconds(waitMs));
    throw error;
  }
  const [claimed] = inserted.rows;
  // created_at defaults to now(), which is fixed for the whole transaction. Drivers give the
  // timestamptz as text (drizzle's raw mode) or a Date; drizzle maps its columns the same way.
  if (claimed) return { kind: 'claimed', now: new Date(claimed.created_at) };

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
  if (!existing) throw new IdempotencyKeyInUseError(inUseRetryAfterSeconds(waitMs));
  if (existing.fingerprint !== scope.fingerprint) throw new IdempotencyKeyReusedError();
  if (existing.state !== 'completed' || !existing.response) throw new IdempotencyKeyInUseError(inUseRetryAfterSeconds(waitMs));
  return { kind: 'replay', charge: fromSnapshot(existing.response as ChargeSnapshot) };
}

/**
 * When a duplicate refused with IDEMPOTENCY_KEY_IN_USE should retry: `waitMs`, in whole seconds
 * (at least 1). The duplicate has already waited `waitMs` for the original, so the original is
 * not simply slow: it is waiting for a lock itself (another writer holds its card or charge row).
 * After its claim every lock wait of the original is bounded by the same `waitMs` (the claim
 * sets `lock_timeout` for its transaction) and it has one such wait (the card for an
 * authorization, the charge for a refund), so within `waitMs` more it has committed (a retry
 * gets the answer replayed) or given up and rolled back (the retry runs the operation itself).
 * Sooner would mostly meet the same wait again; the bound is what the service knows, not a guess.
 */
export function inUseRetryAfterSeconds(waitMs: number): number {
  return Math.max(1, Math.ceil(waitMs / 1000));
}

/**
 * A lock wait that outlasted the claim's bound later in the transaction: another writer held
 * the card or charge row that long. Nothing was written (the transaction rolled back) and a
 * retry with the same key is safe, so it is SERVICE_UNAVAILABLE; any other error passes.
 */
export function lockTimeoutAfterClaim(error: unknown): unknown {
  if (pgErrorCode(error) === LOCK_NOT_AVAILABLE) {
    return new ServiceUnavailableError('The record is busy with another request; retry with the same idempotency key');
  }
  return error;
}

/**
 * The UPDATE that completes a claimed key with the charge's id and the result to replay
 * (`snapshot`: the charge's JSON, or a jsonb expression). Inside a larger statement `chargeId`
 * and `snapshot` may be expressions over its CTEs and `onlyIf` a condition on them (see
 * `writeCharge`).
 */
export function completeIdempotencyKeySql(
  scope: IdempotencyScope,
  chargeId: string | SQL,
  snapshot: string | SQL,
  onlyIf: SQL = sql`true`,
): SQL {
  const response = typeof snapshot === 'string' ? sql`${snapshot}::jsonb` : snapshot;
  return sql`
    update ${chargeIdempotencyKeys}
    set state = 'completed', charge_id = ${chargeId}, response = ${response}, completed_at = now(), locked_until = null
    where principal_id = ${scope.principalId} and operation = ${scope.operation} and key = ${scope.key} and ${onlyIf}`;
}

/** Stores the result to replay, in the same transaction as the state change it guards. */
export async function completeIdempotencyKey(tx: Transaction, scope: IdempotencyScope, charge: ChargeRow): Promise<void> {
  await tx.execute(completeIdempotencyKeySql(scope, charge.id, JSON.stringify(toSnapshot(charge))));
}

/** Deletes keys older than the retention, in batches (`deleteInBatches`); returns how many. */
export function pruneIdempotencyKeys(db: Database, retentionHours: number, batchSize?: number): Promise<number> {
  return deleteInBatches(
    db,
    chargeIdempotencyKeys,
    lt(chargeIdempotencyKeys.createdAt, sql`now() - make_interval(hours => ${retentionHours})`),
    batchSize,
  );
}
