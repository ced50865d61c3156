import { charges, type Database, newId, refunds } from '@ghostpay/db';
import { BadUserInputError, NotFoundError, type Principal } from '@ghostpay/platform';
import { and, eq, inArray, sql } from 'drizzle-orm';
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

      const [current] = await tx.select().from(charges).where(eq(charges.id, chargeId)).for('update');
      if (!current || (principal.role !== 'admin' && current.merchantId !== principal.userId)) {
        throw new NotFoundError('Charge', chargeId);
      }
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
          updatedAt: sql`now()`,
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

      await tx.insert(refunds).values({ id: newId('re'), chargeId, amount: refundAmount, createdBy: principal.userId });
      await recordChargeEvent(tx, updated);
      await completeIdempotencyKey(tx, scope, updated);
      return { charge: updated, replayed: false };
    })
    .catch((error: unknown) => {
      throw lockTimeoutAfterClaim(error);
    });
}
