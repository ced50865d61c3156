import { cards, type Database } from '@ghostpay/db';
import { BadUserInputError, NotFoundError, type Principal } from '@ghostpay/platform';
import { and, eq, gt, sql } from 'drizzle-orm';
import { canSeeCard, visibleCardsCondition } from './card-access.ts';
import { type CardRow, effectiveStatus } from './card-view.ts';
import { isPossibleId } from './storable-text.ts';

/**
 * Cancels an ACTIVE, unexpired card. The update is conditional on the state the card must be
 * in, so it cannot race a charge: whichever commits first wins, the other sees the new status.
 */
export async function cancelCard(db: Database, principal: Principal, cardId: string): Promise<CardRow> {
  if (!isPossibleId(cardId)) throw new NotFoundError('Card', cardId);
  const [updated] = await db
    .update(cards)
    .set({ status: 'CANCELED', canceledAt: sql`now()` })
    .where(and(eq(cards.id, cardId), eq(cards.status, 'ACTIVE'), gt(cards.expiresAt, sql`now()`), visibleCardsCondition(principal)))
    .returning();
  if (updated) return updated;
  const [current] = await db.select().from(cards).where(eq(cards.id, cardId)).limit(1);
  if (!current || !canSeeCard(principal, current)) throw new NotFoundError('Card', cardId);
  const status = effectiveStatus(current);
  // Canceling twice is a no-op, so a retried request gets the same answer.
  if (status === 'CANCELED') return current;
  throw new BadUserInputError([{ field: 'id', message: `card is ${status} and can no longer be canceled` }]);
}
