import { cards, charges, type Database, type DeclineCode, newId } from '@ghostpay/db';
import { ForbiddenError, NotFoundError, type Principal } from '@ghostpay/platform';
import { and, eq, gt, gte, sql } from 'drizzle-orm';
import { recordChargeEvent } from './charge-events.ts';
import { type CreateChargeInput, requestFingerprint, validateCreateCharge } from './charge-input.ts';
import type { ChargeRow } from './charge-record.ts';
import type { ChargesMetrics } from './charges-metrics.ts';
import { claimIdempotencyKey, completeIdempotencyKey, type IdempotencyScope } from './idempotency.ts';

export interface AuthorizeChargeDeps {
  db: Database;
  /** How long a duplicate request waits for its in-flight original. */
  idempotencyWaitMs: number;
  metrics?: ChargesMetrics;
}

export interface AuthorizeChargeResult {
  charge: ChargeRow;
  /** True when this is an idempotent replay of an earlier request. */
  replayed: boolean;
}

/**
 * Whether `principal` may charge a card issued by `issuerId`: admins any card, merchants
 * only the cards they issued. Anything else is indistinguishable from an unknown card.
 */
function mayCharge(principal: Principal, issuerId: string): boolean {
  return principal.role === 'admin' || (principal.role === 'merchant' && issuerId === principal.userId);
}

/**
 * Authorizes a charge on a single-use card in ONE transaction: the idempotency key claim,
 * the conditional card update (ACTIVE → USED when unexpired, same currency, amount within
 * the card's), the charge insert, its event and NOTIFY all commit together or not at all.
 * Under any concurrency exactly one charge per card succeeds: the card row's update is
 * the arbiter, and the partial unique index on charges backs it up.
 */
export async function authorizeCharge(
  deps: AuthorizeChargeDeps,
  principal: Principal,
  input: CreateChargeInput,
  idempotencyKey: string,
): Promise<AuthorizeChargeResult> {
  // The scope check happens in the resolver; the role decides which cards are chargeable.
  if (principal.role !== 'admin' && principal.role !== 'merchant') throw new ForbiddenError('Only merchants and admins create charges');
  validateCreateCharge(input, idempotencyKey);
  const description = input.description ?? null;
  const scope: IdempotencyScope = {
    principalId: principal.userId,
    operation: 'create_charge',
    key: idempotencyKey,
    fingerprint: requestFingerprint('create_charge', { cardId: input.cardId, amount: input.amount, currency: input.currency, description }),
  };
  const isAdmin = principal.role === 'admin';

  const result = await deps.db.transaction(async (tx) => {
    const claim = await claimIdempotencyKey(tx, scope, deps.idempotencyWaitMs);
    if (claim.kind === 'replay') return { charge: claim.charge, replayed: true };

    const used = await tx
      .update(cards)
      .set({ status: 'USED', usedAt: sql`now()` })
      .where(
        and(
          eq(cards.id, input.cardId),
          eq(cards.status, 'ACTIVE'),
          gt(cards.expiresAt, sql`now()`),
          eq(cards.currency, input.currency),
          gte(cards.amount, input.amount),
          isAdmin ? undefined : eq(cards.issuerId, principal.userId),
        ),
      )
      .returning({ id: cards.id });

    let declineCode: DeclineCode | null = null;
    if (used.length === 0) {
      // Not authorized: find out why. The card's status can only move away from ACTIVE, so a
      // plain read after the failed update (which waited for any concurrent writer) is decisive.
      const [card] = await tx
        .select({
          status: cards.status,
          issuerId: cards.issuerId,
          currency: cards.currency,
          amount: cards.amount,
          expired: sql<boolean>`${cards.expiresAt} <= now()`,
        })
        .from(cards)
        .where(eq(cards.id, input.cardId));
      // Throwing rolls back the idempotency claim too: nothing is recorded.
      if (!card || !mayCharge(principal, card.issuerId)) throw new NotFoundError('Card', input.cardId);
      declineCode = declineCodeFor(card, input);
    }

    const [charge] = await tx
      .insert(charges)
      .values({
        id: newId('ch'),
        cardId: input.cardId,
        merchantId: principal.userId,
        amount: input.amount,
        currency: input.currency,
        status: declineCode ? 'DECLINED' : 'AUTHORIZED',
        declineCode,
        description,
        authorizedAt: declineCode ? null : sql`now()`,
      })
      .returning();
    if (!charge) throw new Error('charge insert returned nothing');
    await recordChargeEvent(tx, charge);
    await completeIdempotencyKey(tx, scope, charge);
    return { charge, replayed: false };
  });

  if (!result.replayed) deps.metrics?.chargesTotal.inc({ status: result.charge.status, decline_code: result.charge.declineCode ?? '' });
  return result;
}

/** The decline code for a card the conditional update refused, most fundamental reason first. */
export function declineCodeFor(
  card: { status: string; currency: string; amount: number; expired: boolean },
  input: { amount: number; currency: string },
): DeclineCode {
  if (card.status === 'USED') return 'CARD_ALREADY_USED';
  if (card.status === 'CANCELED') return 'CARD_CANCELED';
  if (card.status === 'EXPIRED' || card.expired) return 'CARD_EXPIRED';
  if (card.currency !== input.currency) return 'CURRENCY_MISMATCH';
  if (Number(card.amount) < input.amount) return 'AMOUNT_EXCEEDS_LIMIT';
  // An ACTIVE, matching card the update did not take cannot happen (its status only leaves ACTIVE).
  throw new Error('card refused by the conditional update but matches every condition');
}
