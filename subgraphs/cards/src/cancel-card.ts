import { cards, clockAfterLock, type Database } from '@ghostpay/db';
import { BadUserInputError, NotFoundError, type Principal } from '@ghostpay/platform';
import { and, eq, sql } from 'drizzle-orm';
import { canSeeCard, visibleCardsCondition } from './card-access.ts';
import { cardColumnsJudgedBy, effectiveStatus, type JudgedCardRow, readCardJudgedBy } from './card-view.ts';
import { isPossibleId } from './storable-text.ts';

/**
 * Cancels an ACTIVE, unexpired card. The update is conditional on the state the card must be
 * in, so it cannot race a charge: whichever commits first wins, the other sees the new status.
 *
 * Expiry is judged once the card row is ours, by the clock: the statement first locks the row
 * (`held`, a CTE the update reads), which may wait for another writer (a charge, a sweep, a
 * re-encryption batch), and only then reads `clock_timestamp()`, once. That one reading decides
 * expiry and is stamped as `canceled_at`. `now()` (the transaction's start, before any wait)
 * would cancel a card that expired during the wait and stamp a time before the cancel
 * happened; and when the other writer only locked the row, PostgreSQL would not re-check the
 * update's condition after the wait at all. Still one statement.
 */
export async function cancelCard(db: Database, principal: Principal, cardId: string): Promise<JudgedCardRow> {
  if (!isPossibleId(cardId)) throw new NotFoundError('Card', cardId);
  // The inner select takes the row lock (no pull-up: it has FOR … UPDATE); the outer one reads
  // the clock in its projection, so after the lock is granted (`clockAfterLock`). Volatile, so
  // materialized: every reference below sees the same reading.
  const held = db.$with('held', { id: sql<string>`id`, at: sql<Date>`at` }).as(sql`
    select id, ${clockAfterLock()} as at from (
      select ${cards.id} from ${cards} where ${cards.id} = ${cardId} and ${visibleCardsCondition(principal)} for no key update
    ) as locked`);
  const [updated] = await db
    .with(held)
    .update(cards)
    .set({ status: 'CANCELED', canceledAt: sql`(select at from ${held})` })
    .where(
      and(
        eq(cards.id, sql`(select id from ${held})`),
        eq(cards.status, 'ACTIVE'),
        sql`${cards.expiresAt} > (select at from ${held})`,
        visibleCardsCondition(principal),
      ),
    )
    // `expired` by the same reading (false: the update required the card unexpired at it).
    .returning(cardColumnsJudgedBy(sql`(select at from ${held})`));
  if (updated) return updated;
  // Why not: expiry read from the clock too (later than the update's reading, so an expiry the
  // update saw still holds here), never from this server's clock.
  const card = await readCardJudgedBy(db, cardId, sql`clock_timestamp()`);
  if (!card || !canSeeCard(principal, card)) throw new NotFoundError('Card', cardId);
  // Canceling twice is a no-op, so a retried request gets the same answer.
  if (card.status === 'CANCELED') return card;
  throw new BadUserInputError([{ field: 'id', message: `card is ${effectiveStatus(card)} and can no longer be canceled` }]);
}
