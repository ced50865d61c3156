import { cards, clockAfterLock, type Database, newId, type RevealOutcome, revealAudit } from '@ghostpay/db';
import { BadUserInputError, ForbiddenError, NotFoundError, type Principal } from '@ghostpay/platform';
import { and, eq, type SQLWrapper, sql } from 'drizzle-orm';
import { canRevealCard, canSeeCard, visibleCardsCondition } from './card-access.ts';
import { cardViewColumns, effectiveStatus, type JudgedCardRow } from './card-view.ts';
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
 * cancel or a charge, `for no key update`, waits for the reveal, and the reveal for them) and
 * read by one statement, then judged, then the audit row is written, then the PAN is decrypted and the CVC
 * derived; the secret leaves this function only once that transaction has committed. So a
 * reveal is never decided on a card another transaction canceled or charged before the audit
 * row was written (before, the read and the audit insert were two statements, and a cancel
 * committing between them left an audit row, and a PAN handed out, after the card's
 * cancellation), no PAN goes out without a committed audit row (stamped with the clock reading
 * the decision was made by, after the lock, not the transaction's start), and a reveal that fails after
 * the insert (a key missing from the keyring, a corrupt ciphertext, no CVC key) leaves no audit
 * row of a disclosure that did not happen.
 *
 * A refused attempt by a caller who may see the card is audited too, in the same way (decided
 * under the lock, its row committed before the refusal is thrown): `FORBIDDEN` (the issuing
 * merchant asking for a PAN) and `NOT_ACTIVE` (the owner or an admin asking for the PAN of a
 * used, expired or canceled card) are security-relevant. A caller who may not see the card
 * (NOT_FOUND) writes nothing: the audit row names an existing card, and what strangers try is
 * already counted by the rate limit, per caller, without a row per attempt.
 */
export async function revealCard(
  db: Database,
  panSecrets: PanSecrets,
  principal: Principal,
  cardId: string,
  requestId: string | undefined,
): Promise<CardSecret> {
  if (!isPossibleId(cardId)) throw new NotFoundError('Card', cardId);
  const decision = await db.transaction(async (transaction): Promise<{ secret: CardSecret } | { refusal: Error }> => {
    const tx = transaction as unknown as Database;
    // One statement locks and reads the card. Only a card the caller may see is locked (the inner
    // select); a lock wait (a charge or cancel in flight) ends with that writer's commit or
    // rollback, and the row comes out as that writer left it (a locking read returns the latest
    // version, and drops a row that no longer matches). The outer select reads the clock in its
    // projection, so after the lock is granted (`clockAfterLock`), and judges expiry by it, not by
    // the transaction's start, which was before any wait: the state the audit row stands for.
    // Its columns come from the locked row, never from a second read of the table (which would see
    // the statement's snapshot, taken before the wait). The only card read that takes the
    // ciphertext and its key id (the view's columns leave them out).
    const locked = tx
      .select({ ...cardViewColumns, panCiphertext: cards.panCiphertext, panKeyId: cards.panKeyId })
      .from(cards)
      .where(and(eq(cards.id, cardId), visibleCardsCondition(principal)))
      .for('share')
      .as('locked');
    const [card] = await tx.select({ ...lockedColumns(locked), decision: decidedAfterLock(locked.expiresAt) }).from(locked);
    if (!card || !canSeeCard(principal, card)) throw new NotFoundError('Card', cardId);
    // Stamped with the reading the decision was made by, exactly (microseconds, sent back as the
    // database wrote it): not the column's default, the transaction's start, which is before any
    // wait; a card that expired while the reveal waited would be audited as refused before it expired.
    const audit = (outcome: RevealOutcome) =>
      tx.insert(revealAudit).values({
        id: newId('rev'),
        cardId: card.id,
        actorId: principal.userId,
        actorRole: principal.role,
        requestId: requestId ?? null,
        outcome,
        revealedAt: sql`${card.decision.at}::timestamptz`,
      });
    if (!canRevealCard(principal, card)) {
      await audit('FORBIDDEN');
      return { refusal: new ForbiddenError('Only the card owner or an admin may reveal a card') };
    }
    const status = effectiveStatus({ status: card.status, expired: card.decision.expired });
    if (status !== 'ACTIVE') {
      await audit('NOT_ACTIVE');
      return { refusal: new BadUserInputError([{ field: 'id', message: `card is ${status}; only an ACTIVE card can be revealed` }]) };
    }
    // An ACTIVE card always has its PAN (cards_active_has_pan); only the retention erases one, of a
    // card that left ACTIVE. Thrown before the audit row: nothing was disclosed.
    if (card.panCiphertext === null) throw new Error(`card ${card.id} is ACTIVE without a PAN`);
    await audit('REVEALED');
    const pan = decryptPan(panSecrets.keyring(), card.id, card.panKeyId, card.panCiphertext);
    return {
      secret: {
        pan,
        cvc: deriveCvc(panSecrets.cvcKey(), pan, card.expMonth, card.expYear),
        expMonth: card.expMonth,
        expYear: card.expYear,
      },
    };
  });
  // A refusal is thrown once its audit row has committed.
  if ('refusal' in decision) throw decision.refusal;
  return decision.secret;
}

/**
 * The moment a reveal is decided and whether the card had expired by then: one reading of the
 * clock (`clockAfterLock`), taken in the outer select's projection, so after the card's lock is
 * granted, and used for both (two `clock_timestamp()` calls would be two readings). A correlated
 * scalar subquery, run for the locked row; `offset 0` keeps the reading in its own subquery, so
 * `at` is read once and referenced twice. `at` comes back as the database's text for it
 * (json_build_object's ISO 8601, microseconds and offset) so the audit row stores that very value.
 */
function decidedAfterLock(expiresAt: SQLWrapper) {
  return sql<{
    at: string;
    expired: boolean;
  }>`(select json_build_object('at', at, 'expired', ${expiresAt} <= at) from (select ${clockAfterLock()} as at offset 0) as reading)`;
}

/** Every column of the locked card, as the outer select reads it. */
function lockedColumns<T extends Record<keyof RevealedCardRow, unknown>>(locked: T): Pick<T, keyof RevealedCardRow> {
  const columns = [...Object.keys(cardViewColumns), 'panCiphertext', 'panKeyId'] as (keyof RevealedCardRow)[];
  return Object.fromEntries(columns.map((key) => [key, locked[key]])) as Pick<T, keyof RevealedCardRow>;
}

type RevealedCardRow = Omit<JudgedCardRow, 'expired'> & { panCiphertext: string | null; panKeyId: string };
