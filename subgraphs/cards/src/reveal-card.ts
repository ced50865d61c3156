import { type Database, newId, revealAudit } from '@ghostpay/db';
import { BadUserInputError, ForbiddenError, NotFoundError, type Principal } from '@ghostpay/platform';
import { sql } from 'drizzle-orm';
import { canRevealCard, canSeeCard } from './card-access.ts';
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
 * Returns the PAN and CVC of an ACTIVE card to its owner or an admin. The audit row is
 * written before anything is decrypted: a reveal that cannot be audited does not happen.
 * The issuing merchant sees the card but may not reveal it (FORBIDDEN); anyone else gets
 * NOT_FOUND. The rate limit runs before this (the `@rateLimit` directive), counting attempts.
 */
export async function revealCard(
  db: Database,
  panSecrets: PanSecrets,
  principal: Principal,
  cardId: string,
  requestId: string | undefined,
): Promise<CardSecret> {
  if (!isPossibleId(cardId)) throw new NotFoundError('Card', cardId);
  // Expired or not by the database's clock (which charges and cancels judge by), not this
  // replica's: one whose clock ran behind would reveal a card that has expired.
  const card = await readCardJudgedBy(db, cardId, sql`now()`);
  if (!card || !canSeeCard(principal, card)) throw new NotFoundError('Card', cardId);
  if (!canRevealCard(principal, card)) throw new ForbiddenError('Only the card owner or an admin may reveal a card');
  const status = effectiveStatus(card);
  if (status !== 'ACTIVE')
    throw new BadUserInputError([{ field: 'id', message: `card is ${status}; only an ACTIVE card can be revealed` }]);
  await db.insert(revealAudit).values({
    id: newId('rev'),
    cardId: card.id,
    actorId: principal.userId,
    actorRole: principal.role,
    requestId: requestId ?? null,
  });
  const pan = decryptPan(panSecrets.keyring(), card.id, card.panKeyId, card.panCiphertext);
  return { pan, cvc: deriveCvc(panSecrets.cvcKey(), pan, card.expMonth, card.expYear), expMonth: card.expMonth, expYear: card.expYear };
}
