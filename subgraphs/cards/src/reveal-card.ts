import { cards, type Database, newId, revealAudit } from '@ghostpay/db';
import { BadUserInputError, ForbiddenError, NotFoundError, type Principal } from '@ghostpay/platform';
import { and, eq, sql } from 'drizzle-orm';
import { canRevealCard, canSeeCard, visibleCardsCondition } from './card-access.ts';
import { effectiveStatus, readCardJudgedBy } from './card-view.ts';
import { decryptPan, deriveCvc, type PanSecrets } from './pan-crypto.ts';
import { isPossibleId } from './storable-text.ts';

export interface CardSecret {
  pan: string;
  cvc: string;
  expMonth: number;
  expYear: number;
}

/**
 * Returns the PAN and CVC of an ACTIVE card to its owner or an admin. The issuing merchant sees
 * the card but may not reveal it (FORBIDDEN); anyone else gets NOT_FOUND. The rate limit runs
 * before this (the `@rateLimit` directive), counting attempts.
 *
 * The decision and its audit row are one transaction: the card row is locked `for share` (a
 * cancel or a charge, `for no key update`, waits for the reveal, and the reveal for them), then
 * read and judged, then the audit row is written, then the PAN is decrypted and the CVC
 * derived; the secret leaves this function only once that transaction has committed. So a
 * reveal is never decided on a card another transaction canceled or charged before the audit
 * row was written (before, the read and the audit insert were two statements, and a cancel
 * committing between them left an audit row, and a PAN handed out, after the card's
 * cancellation), no PAN goes out without a committed audit row, and a reveal that fails after
 * the insert (a key missing from the keyring, a corrupt ciphertext, no CVC key) leaves no audit
 * row of a disclosure that did not happen.
 */
export async function revealCard(
  db: Database,
  panSecrets: PanSecrets,
  principal: Principal,
  cardId: string,
  requestId: string | undefined,
): Promise<CardSecret> {
  if (!isPossibleId(cardId)) throw new NotFoundError('Card', cardId);
  return db.transaction(async (transaction) => {
    const tx = transaction as unknown as Database;
    // Only a card the caller may see is locked; a lock wait (a charge or cancel in flight) ends
    // with that writer's commit or rollback.
    await tx
      .select({ id: cards.id })
      .from(cards)
      .where(and(eq(cards.id, cardId), visibleCardsCondition(principal)))
      .for('share');
    // Read after the lock, expiry by the database's clock at this point (`clock_timestamp()`, not
    // the transaction's start, which was before any wait): the state the audit row stands for.
    const card = await readCardJudgedBy(tx, cardId, sql`clock_timestamp()`);
    if (!card || !canSeeCard(principal, card)) throw new NotFoundError('Card', cardId);
    if (!canRevealCard(principal, card)) throw new ForbiddenError('Only the card owner or an admin may reveal a card');
    const status = effectiveStatus(card);
    if (status !== 'ACTIVE')
      throw new BadUserInputError([{ field: 'id', message: `card is ${status}; only an ACTIVE card can be revealed` }]);
    await tx.insert(revealAudit).values({
      id: newId('rev'),
      cardId: card.id,
      actorId: principal.userId,
      actorRole: principal.role,
      requestId: requestId ?? null,
    });
    const pan = decryptPan(panSecrets.keyring(), card.id, card.panKeyId, card.panCiphertext);
    return { pan, cvc: deriveCvc(panSecrets.cvcKey(), pan, card.expMonth, card.expYear), expMonth: card.expMonth, expYear: card.expYear };
  });
}
