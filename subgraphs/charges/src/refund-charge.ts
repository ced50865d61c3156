import { charges, clockAfterLock, type Database, newId, refunds } from '@ghostpay/db';
import { BadUserInputError, NotFoundError, type Principal } from '@ghostpay/platform';
import { and, eq, getTableColumns, inArray, sql } from 'drizzle-orm';
import { recordChargeEvent } from './charge-events.ts';
import { requestFingerprint, validateRefund } from './charge-input.ts';
import type { ChargeRow } from './charge-record.ts';
import { claimIdempotencyKey, completeIdempotencyKey, type IdempotencyScope, lockTimeoutAfterClaim } from './idempotency.ts';

export interface RefundChargeDeps {
  db: Database;
  idempotencyWaitMs: number;
}

const refundableStatuses = ['AUTHORIZED', 'SETTLED', 'PARTIALLY_REFUNDED'] as const;

/**
 * Refunds `amount` (default: all that is not refunded yet) of a charge the caller made
 * (admins: any charge), idempotently. The refunded total can never pass the charged amount:
 * the charge row is locked for the decision, the update re-checks the bound in SQL, and a
 * check constraint backs both. Refund row, status change, event and NOTIFY commit together.
 *
 * The refund happens when the charge row is ours: the statement that locks it (and may first
 * wait for another writer of the charge, a refund or the settlement worker) reads
 * `clock_timestamp()` once the lock is granted, and that reading stamps the refund row's
 * `created_at` and the charge's `updated_at`. `now()`, the transaction's start, is before any
 * such wait. No extra statement: the reading is one more column of the locking read.
 */
export async function refundCharge(
  deps: RefundChargeDeps,
  principal: Principal,
  chargeId: string,
  amount: number | null | undefined,
  idempotencyKey: string,
): Promise<{ charge: ChargeRow; replayed: boolean }> {
  validateRefund(chargeId, amount, idempotencyKey);
  const scope: IdempotencyScope = {
    principalId: principal.userId,
    operation: 'refund_charge',
    key: idempotencyKey,
    fingerprint: requestFingerprint('refund_charge', { chargeId, amount: amount ?? null }),
  };
  return deps.db
    .transaction(async (tx) => {
      const claim = await claimIdempotencyKey(tx, scope, deps.idempotencyWaitMs);
      if (claim.kind === 'replay') return { charge: claim.charge, replayed: true };

      // The inner select takes the row lock (no pull-up: it has FOR UPDATE) and returns the row as
      // committed by any writer it waited for; the outer one reads the clock in its projection,
      // so after the lock is granted. At millisecond precision, which the row returned, the event
      // and the replay (JavaScript Dates) hold.
      const locked = tx.select().from(charges).where(eq(charges.id, chargeId)).for('update').as('locked');
      const lockedColumns = Object.fromEntries(
        Object.keys(getTableColumns(charges)).map((key) => [key, locked[key as keyof ChargeRow]]),
      ) as {
        [K in keyof ChargeRow]: (typeof locked)[K];
      };
      const [read] = await tx
        .select({ ...lockedColumns, lockedAt: clockAfterLock('milliseconds').mapWith(charges.updatedAt) })
        .from(locked);
      if (!read || (principal.role !== 'admin' && read.merchantId !== principal.userId)) {
        throw new NotFoundError('Charge', chargeId);
      }
      const { lockedAt, ...current } = read;
      if (current.status === 'DECLINED') throw new BadUserInputError([{ field: 'id', message: 'a declined charge cannot be refunded' }]);
      const remaining = Number(current.amount) - Number(current.refundedAmount);
      const refundAmount = amount ?? remaining;
      if (remaining === 0) throw new BadUserInputError([{ field: 'id', message: 'the charge is already fully refunded' }]);
      if (refundAmount > remaining) {
        throw new BadUserInputError([{ field: 'amount', message: `exceeds the refundable remainder of ${remaining}` }]);
      }

      const [updated] = await tx
        .update(charges)
        .set({
          refundedAmount: sql`${charges.refundedAmount} + ${refundAmount}`,
          status: sql`case when ${charges.refundedAmount} + ${refundAmount} = ${charges.amount} then 'REFUNDED' else 'PARTIALLY_REFUNDED' end`,
          updatedAt: lockedAt,
        })
        .where(
          and(
            eq(charges.id, chargeId),
            sql`${charges.refundedAmount} + ${refundAmount} <= ${charges.amount}`,
            inArray(charges.status, [...refundableStatuses]),
          ),
        )
        .returning();
      // Unreachable while the row lock above is held; kept so the bound never rests on one mechanism.
      if (!updated) throw new BadUserInputError([{ field: 'amount', message: 'exceeds the refundable remainder' }]);

      await tx
        .insert(refunds)
        .values({ id: newId('re'), chargeId, amount: refundAmount, createdBy: principal.userId, createdAt: lockedAt });
      await recordChargeEvent(tx, updated);
      await completeIdempotencyKey(tx, scope, updated);
      return { charge: updated, replayed: false };
    })
    .catch((error: unknown) => {
      throw lockTimeoutAfterClaim(error);
    });
}
