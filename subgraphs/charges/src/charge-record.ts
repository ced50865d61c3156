import type { charges } from '@ghostpay/db';

/** A charges.charges row as drizzle returns it. */
export type ChargeRow = typeof charges.$inferSelect;

/** JSON form of a charge: stored as an idempotent replay and in every event row. No card data besides its id. */
export interface ChargeSnapshot {
  id: string;
  cardId: string;
  merchantId: string;
  amount: number;
  currency: string;
  status: ChargeRow['status'];
  declineCode: ChargeRow['declineCode'];
  refundedAmount: number;
  description: string | null;
  createdAt: string;
  authorizedAt: string | null;
  settledAt: string | null;
  updatedAt: string;
}

export function toSnapshot(row: ChargeRow): ChargeSnapshot {
  return {
    id: row.id,
    cardId: row.cardId,
    merchantId: row.merchantId,
    amount: Number(row.amount),
    currency: row.currency,
    status: row.status,
    declineCode: row.declineCode,
    refundedAmount: Number(row.refundedAmount),
    description: row.description,
    createdAt: row.createdAt.toISOString(),
    authorizedAt: row.authorizedAt?.toISOString() ?? null,
    settledAt: row.settledAt?.toISOString() ?? null,
    updatedAt: row.updatedAt.toISOString(),
  };
}

export function fromSnapshot(snapshot: ChargeSnapshot): ChargeRow {
  return {
    ...snapshot,
    createdAt: new Date(snapshot.createdAt),
    authorizedAt: snapshot.authorizedAt ? new Date(snapshot.authorizedAt) : null,
    settledAt: snapshot.settledAt ? new Date(snapshot.settledAt) : null,
    updatedAt: new Date(snapshot.updatedAt),
  };
}
