import type { CardStatus, cards } from '@ghostpay/db';
import { currencyExponent } from '@ghostpay/platform';

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
  return row.status === 'ACTIVE' && row.expiresAt.getTime() <= now.getTime() ? 'EXPIRED' : row.status;
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
