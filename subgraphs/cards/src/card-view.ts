import { type CardStatus, cards, type Database } from '@ghostpay/db';
import { currencyExponent } from '@ghostpay/platform';
import { eq, type SQL, sql } from 'drizzle-orm';

/**
 * The columns a card read needs (the view, the access checks, expiry): every column of the table
 * except the PAN's ciphertext, its key id and its fingerprint, named one by one. Card reads
 * (`card(id)`, `Card` entities, the pages, a mutation's answer) never load those into this
 * process, so no serialization slip or debug log can leak what was never read, and a column added
 * to the table is not read until it is named here. Only reveal (`src/reveal-card.ts`) and the
 * re-encryption read the ciphertext.
 */
export const cardViewColumns = {
  id: cards.id,
  ownerId: cards.ownerId,
  issuerId: cards.issuerId,
  bin: cards.bin,
  last4: cards.last4,
  brand: cards.brand,
  expMonth: cards.expMonth,
  expYear: cards.expYear,
  expiresAt: cards.expiresAt,
  amount: cards.amount,
  currency: cards.currency,
  status: cards.status,
  createdAt: cards.createdAt,
  usedAt: cards.usedAt,
  canceledAt: cards.canceledAt,
};

/** A card as read for its view: never its PAN's ciphertext, key id or fingerprint. */
export type CardRow = Pick<typeof cards.$inferSelect, keyof typeof cardViewColumns>;

/** What the GraphQL `Card` type resolves from: never the ciphertext, fingerprint or key id. */
export interface CardView {
  __typename: 'Card';
  id: string;
  status: CardStatus;
  amount: number;
  currency: string;
  currencyExponent: number;
  bin: string;
  last4: string;
  brand: string;
  expMonth: number;
  expYear: number;
  expiresAt: Date;
  ownerId: string;
  issuerId: string;
  createdAt: Date;
  usedAt: Date | null;
  canceledAt: Date | null;
}

/** A card as read with `expired`: whether its expiry has passed by the database's clock. */
export type JudgedCardRow = CardRow & { expired: boolean };

/**
 * The columns of a card's view (`cardViewColumns`: no ciphertext, key id or fingerprint) and
 * `expired`, judged by the database's `clock` (`now()`, `clock_timestamp()`, or a reading the
 * statement took), never this server's: a replica whose
 * clock is off would show a card ACTIVE (or EXPIRED) that the `cards(filter: {status})` filter,
 * cancel, reveal and charge authorization, all judging by the database's clock, treat otherwise.
 * One more column of the same statement, so no extra round trip.
 */
export function cardColumnsJudgedBy(clock: SQL) {
  return { ...cardViewColumns, expired: sql<boolean>`${cards.expiresAt} <= ${clock}` };
}

/**
 * Expiry is computed on read: an ACTIVE card whose `expiresAt` has passed (by the database's
 * clock, `expired`) is EXPIRED even before anything rewrites its row, so no sweeper lag can make
 * it look chargeable.
 */
export function effectiveStatus(row: Pick<JudgedCardRow, 'status' | 'expired'>): CardStatus {
  return row.status === 'ACTIVE' && row.expired ? 'EXPIRED' : row.status;
}

/**
 * One card with `expired` judged by the database's `clock`; undefined when there is no such card.
 * Its status as readers see it is `effectiveStatus` of it.
 */
export async function readCardJudgedBy(db: Database, cardId: string, clock: SQL): Promise<JudgedCardRow | undefined> {
  const [row] = await db.select(cardColumnsJudgedBy(clock)).from(cards).where(eq(cards.id, cardId)).limit(1);
  return row;
}

export function toCardView(row: JudgedCardRow): CardView {
  return {
    __typename: 'Card',
    id: row.id,
    status: effectiveStatus(row),
    amount: row.amount,
    currency: row.currency,
    currencyExponent: currencyExponent(row.currency) ?? 2,
    bin: row.bin,
    last4: row.last4,
    brand: row.brand,
    expMonth: row.expMonth,
    expYear: row.expYear,
    expiresAt: row.expiresAt,
    ownerId: row.ownerId,
    issuerId: row.issuerId,
    createdAt: row.createdAt,
    usedAt: row.usedAt,
    canceledAt: row.canceledAt,
  };
}
