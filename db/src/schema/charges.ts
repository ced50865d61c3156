import { type SQL, sql } from 'drizzle-orm';
import {
  type AnyPgColumn,
  bigint,
  bigserial,
  char,
  check,
  index,
  jsonb,
  pgSchema,
  primaryKey,
  text,
  timestamp,
  uniqueIndex,
} from 'drizzle-orm/pg-core';
import { users } from './auth.ts';
import { cards } from './cards.ts';

export const chargesSchema = pgSchema('charges');

export const chargeStatuses = ['AUTHORIZED', 'SETTLED', 'DECLINED', 'REFUNDED', 'PARTIALLY_REFUNDED'] as const;
export type ChargeStatus = (typeof chargeStatuses)[number];

export const declineCodes = ['CARD_ALREADY_USED', 'CARD_EXPIRED', 'CARD_CANCELED', 'AMOUNT_EXCEEDS_LIMIT', 'CURRENCY_MISMATCH'] as const;
export type DeclineCode = (typeof declineCodes)[number];

/**
 * Charges the settlement worker has still to settle: authorized, or partially refunded
 * before settlement, and not settled yet. The partial index `charges_settlement_due_idx`
 * and the worker's select both use this condition, word for word and with literal statuses
 * (not parameters): PostgreSQL uses a partial index only for a query whose condition
 * implies the index's, and cannot prove that for parameters in a generic plan.
 */
export function awaitingSettlement(t: { status: AnyPgColumn; settledAt: AnyPgColumn }): SQL {
  return sql`${t.settledAt} is null and ${t.status} in ('AUTHORIZED', 'PARTIALLY_REFUNDED')`;
}

export const charges = chargesSchema.table(
  'charges',
  {
    id: text('id').primaryKey(),
    cardId: text('card_id')
      .notNull()
      .references(() => cards.id),
    merchantId: text('merchant_id')
      .notNull()
      .references(() => users.id),
    amount: bigint('amount', { mode: 'number' }).notNull(),
    currency: char('currency', { length: 3 }).notNull(),
    status: text('status', { enum: chargeStatuses }).notNull(),
    declineCode: text('decline_code', { enum: declineCodes }),
    refundedAmount: bigint('refunded_amount', { mode: 'number' }).notNull().default(0),
    description: text('description'),
    createdAt: timestamp('created_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow(),
    authorizedAt: timestamp('authorized_at', { withTimezone: true, mode: 'date' }),
    settledAt: timestamp('settled_at', { withTimezone: true, mode: 'date' }),
    updatedAt: timestamp('updated_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow(),
  },
  (t) => [
    // Single use, enforced by the database too: one non-declined charge per card.
    uniqueIndex('charges_one_success_per_card').on(t.cardId).where(sql`${t.status} <> 'DECLINED'`),
    index('charges_card_idx').on(t.cardId),
    index('charges_merchant_created_idx').on(t.merchantId, t.createdAt, t.id),
    index('charges_created_id_idx').on(t.createdAt, t.id),
    // The settlement worker's select: due charges, oldest authorization first.
    index('charges_settlement_due_idx').on(t.authorizedAt).where(awaitingSettlement(t)),
    check('charges_amount_positive', sql`${t.amount} > 0`),
    check('charges_refund_bounds', sql`${t.refundedAmount} >= 0 and ${t.refundedAmount} <= ${t.amount}`),
    check('charges_status_check', sql`${t.status} in ('AUTHORIZED', 'SETTLED', 'DECLINED', 'REFUNDED', 'PARTIALLY_REFUNDED')`),
    check('charges_decline_code_check', sql`(${t.status} = 'DECLINED') = (${t.declineCode} is not null)`),
    check('charges_currency_format', sql`${t.currency} ~ '^[A-Z]{3}$'`),
    // Migration 0002 (added NOT VALID, validated by `migrate` after it commits; see the README).
    check(
      'charges_decline_code_values',
      sql`${t.declineCode} in ('CARD_ALREADY_USED', 'CARD_EXPIRED', 'CARD_CANCELED', 'AMOUNT_EXCEEDS_LIMIT', 'CURRENCY_MISMATCH')`,
    ),
    // REFUNDED: all of it; PARTIALLY_REFUNDED: some; any other status: none.
    check(
      'charges_refunded_matches_status',
      sql`case ${t.status} when 'REFUNDED' then ${t.refundedAmount} = ${t.amount} when 'PARTIALLY_REFUNDED' then ${t.refundedAmount} > 0 and ${t.refundedAmount} < ${t.amount} else ${t.refundedAmount} = 0 end`,
    ),
    // A decline was never authorized nor settled; everything else was authorized; SETTLED has
    // a settlement time, AUTHORIZED none, and no settlement precedes its authorization.
    check(
      'charges_times_match_status',
      sql`case when ${t.status} = 'DECLINED' then ${t.authorizedAt} is null and ${t.settledAt} is null else ${t.authorizedAt} is not null and (${t.settledAt} is null or ${t.settledAt} >= ${t.authorizedAt}) end and (${t.status} <> 'SETTLED' or ${t.settledAt} is not null) and (${t.status} <> 'AUTHORIZED' or ${t.settledAt} is null)`,
    ),
    // Migration 0003: no amount above the services' cap (`maxAmountMinorUnits`, 2^31 - 1;
    // refunded_amount is within amount by charges_refund_bounds, and capped here all the same).
    check('charges_amount_max', sql`${t.amount} <= 2147483647 and ${t.refundedAmount} <= 2147483647`),
  ],
);

export const refunds = chargesSchema.table(
  'refunds',
  {
    id: text('id').primaryKey(),
    chargeId: text('charge_id')
      .notNull()
      .references(() => charges.id),
    amount: bigint('amount', { mode: 'number' }).notNull(),
    createdBy: text('created_by').notNull(),
    createdAt: timestamp('created_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow(),
  },
  (t) => [
    index('refunds_charge_idx').on(t.chargeId),
    check('refunds_amount_positive', sql`${t.amount} > 0`),
    // Migration 0003: no amount above the services' cap (`maxAmountMinorUnits`, 2^31 - 1).
    check('refunds_amount_max', sql`${t.amount} <= 2147483647`),
  ],
);

/** One row per charge status change, written in the same transaction as the change. */
export const chargeEvents = chargesSchema.table(
  'charge_events',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    chargeId: text('charge_id')
      .notNull()
      .references(() => charges.id),
    status: text('status', { enum: chargeStatuses }).notNull(),
    data: jsonb('data'),
    createdAt: timestamp('created_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow(),
  },
  (t) => [
    index('charge_events_charge_idx').on(t.chargeId, t.id),
    check('charge_events_status_check', sql`${t.status} in ('AUTHORIZED', 'SETTLED', 'DECLINED', 'REFUNDED', 'PARTIALLY_REFUNDED')`),
  ],
);

/**
 * Idempotency keys for charge mutations, scoped to the caller and operation. A key is claimed
 * (inserted `in_progress`, `on conflict do nothing`) by the first statement of the transaction
 * that performs the operation, and completed (`completed`, with the result to replay) by that
 * same transaction, with the state change it guards (subgraphs/charges/src/idempotency.ts). So a
 * key commits completed or not at all: an operation that fails or is refused (NOT_FOUND) rolls
 * its claim back and leaves the key free. A concurrent duplicate's insert waits on the primary key
 * for the original's transaction to end (at most the claim's `lock_timeout`, the charges
 * service's `IDEMPOTENCY_WAIT_MS`, then IDEMPOTENCY_KEY_IN_USE), and then replays the completed
 * row or, after a rollback, claims the key itself. `locked_until` (the claim's `now()` plus that
 * wait) is set by the claim and cleared by the completion, so committed rows have it null; a
 * committed `in_progress` row (none is written now) is answered IDEMPOTENCY_KEY_IN_USE.
 */
export const chargeIdempotencyKeys = chargesSchema.table(
  'idempotency_keys',
  {
    principalId: text('principal_id').notNull(),
    key: text('key').notNull(),
    operation: text('operation', { enum: ['create_charge', 'refund_charge'] }).notNull(),
    fingerprint: text('fingerprint').notNull(),
    state: text('state', { enum: ['in_progress', 'completed'] }).notNull(),
    chargeId: text('charge_id'),
    response: jsonb('response'),
    lockedUntil: timestamp('locked_until', { withTimezone: true, mode: 'date' }),
    createdAt: timestamp('created_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow(),
    completedAt: timestamp('completed_at', { withTimezone: true, mode: 'date' }),
  },
  (t) => [
    primaryKey({ columns: [t.principalId, t.operation, t.key] }),
    index('charge_idempotency_created_idx').on(t.createdAt),
    check('charge_idempotency_operation_check', sql`${t.operation} in ('create_charge', 'refund_charge')`),
    check('charge_idempotency_state_check', sql`${t.state} in ('in_progress', 'completed')`),
  ],
);
