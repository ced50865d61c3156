import { type CardStatus, cards, type Database } from '@ghostpay/db';
import { currencyExponent } from '@ghostpay/platform';
import { eq, getTableColumns, type SQL, sql } from 'drizzle-orm';

export type CardRow = typeof cards.$inferSelect;

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

/**
 * Expiry is computed on read: an ACTIVE card whose `expiresAt` has passed is EXPIRED even
 * before anything rewrites its row, so no sweeper lag can make it look chargeable.
 */
export function effectiveStatus(row: Pick<CardRow, 'status' | 'expiresAt'>, now: Date = new Date()): CardStatus {
  return statusGivenExpiry(row.status, row.expiresAt.getTime() <= now.getTime());
}

/** A stored status as it reads once expiry is known: an ACTIVE card that has expired is EXPIRED. */
function statusGivenExpiry(status: CardStatus, expired: boolean): CardStatus {
  return status === 'ACTIVE' && expired ? 'EXPIRED' : status;
}

/**
 * One card and its status with expiry judged by the database's `clock` (`now()`,
 * `clock_timestamp()`), never this server's: a replica whose clock is off would judge a card
 * the statements that charge and cancel it judge otherwise. Undefined when there is no such card.
 */
export async function readCardJudgedBy(
  db: Database,
  cardId: string,
  clock: SQL,
): Promise<{ card: CardRow; status: CardStatus } | undefined> {
  const [row] = await db
    .select({ ...getTableColumns(cards), expired: sql<boolean>`${cards.expiresAt} <= ${clock}` })
    .from(cards)
    .where(eq(cards.id, cardId))
    .limit(1);
  if (!row) return undefined;
  const { expired, ...card } = row;
  return { card, status: statusGivenExpiry(card.status, expired) };
}

export function toCardView(row: CardRow, now: Date = new Date()): CardView {
  return {
    __typename: 'Card',
    id: row.id,
    status: effectiveStatus(row, now),
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
