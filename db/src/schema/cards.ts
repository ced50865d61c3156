import { sql } from 'drizzle-orm';
import { bigint, char, check, index, integer, pgSchema, primaryKey, smallint, text, timestamp, uniqueIndex } from 'drizzle-orm/pg-core';
import { users } from './auth.ts';

/**
 * The largest amount in minor units any service accepts (a card's limit, a charge, a refund):
 * GraphQL's Int, 2^31 - 1 (cards' CARD_MAX_AMOUNT is capped at it, charges refuse more). Well
 * inside what a JavaScript number holds exactly (2^53 - 1), which the `bigint` columns, read as
 * numbers, need. Migration 0003's `*_amount_max` checks hold every stored amount to it.
 */
export const maxAmountMinorUnits = 2_147_483_647;

export const cardsSchema = pgSchema('cards');

export const cardStatuses = ['ACTIVE', 'USED', 'EXPIRED', 'CANCELED'] as const;
export type CardStatus = (typeof cardStatuses)[number];

export const cards = cardsSchema.table(
  'cards',
  {
    id: text('id').primaryKey(),
    ownerId: text('owner_id')
      .notNull()
      .references(() => users.id),
    issuerId: text('issuer_id')
      .notNull()
      .references(() => users.id),
    /**
     * AES-256-GCM: base64(iv | ciphertext | tag). Never a readable PAN. Null once erased: the cards
     * housekeeping erases it `CARD_PAN_RETENTION_DAYS` after a card left ACTIVE (only an ACTIVE
     * card reveals, so nothing reads it any more); an ACTIVE card always has it
     * (`cards_active_has_pan`, migration 0004).
     */
    panCiphertext: text('pan_ciphertext'),
    /** Which data key encrypted the PAN, so keys can rotate. */
    panKeyId: text('pan_key_id').notNull(),
    /** HMAC of the PAN under a secret key: uniqueness without storing the PAN. */
    panFingerprint: text('pan_fingerprint').notNull(),
    bin: char('bin', { length: 6 }).notNull(),
    last4: char('last4', { length: 4 }).notNull(),
    brand: text('brand').notNull(),
    expMonth: smallint('exp_month').notNull(),
    expYear: smallint('exp_year').notNull(),
    expiresAt: timestamp('expires_at', { withTimezone: true, mode: 'date' }).notNull(),
    /** Spend limit of the card's single charge, in the currency's minor units. */
    amount: bigint('amount', { mode: 'number' }).notNull(),
    currency: char('currency', { length: 3 }).notNull(),
    status: text('status', { enum: cardStatuses }).notNull().default('ACTIVE'),
    createdAt: timestamp('created_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow(),
    usedAt: timestamp('used_at', { withTimezone: true, mode: 'date' }),
    canceledAt: timestamp('canceled_at', { withTimezone: true, mode: 'date' }),
  },
  (t) => [
    uniqueIndex('cards_pan_fingerprint_key').on(t.panFingerprint),
    index('cards_owner_id_created_idx').on(t.ownerId, t.createdAt, t.id),
    index('cards_issuer_id_created_idx').on(t.issuerId, t.createdAt, t.id),
    index('cards_created_id_idx').on(t.createdAt, t.id),
    check('cards_amount_positive', sql`${t.amount} > 0`),
    check('cards_status_check', sql`${t.status} in ('ACTIVE', 'USED', 'EXPIRED', 'CANCELED')`),
    check('cards_currency_format', sql`${t.currency} ~ '^[A-Z]{3}$'`),
    check('cards_exp_month_range', sql`${t.expMonth} between 1 and 12`),
    // Migration 0003 (added NOT VALID, validated by `migrate` after it commits; see the README).
    check('cards_amount_max', sql`${t.amount} <= 2147483647`),
    // USED exactly when spent: the authorization sets both at once, and nothing else writes
    // used_at or moves a card out of USED (cancel and expiry take only ACTIVE cards).
    check('cards_used_at_matches_status', sql`(${t.status} = 'USED') = (${t.usedAt} is not null)`),
    // Migration 0004: only a card that left ACTIVE may have its PAN erased.
    check('cards_active_has_pan', sql`${t.status} <> 'ACTIVE' or ${t.panCiphertext} is not null`),
    // Migration 0004: the PANs the retention has yet to erase, by when their card left ACTIVE
    // (USED: used_at; CANCELED: canceled_at; EXPIRED: expires_at). Erased rows leave the index,
    // so it holds only the cards that ended within the retention period.
    index('cards_pan_retention_idx')
      .on(sql`coalesce(${t.usedAt}, ${t.canceledAt}, ${t.expiresAt})`)
      .where(sql`${t.panCiphertext} is not null and ${t.status} <> 'ACTIVE'`),
    // Migration 0005: the ACTIVE cards by expiry, so the expiry sweep (`expireCards`:
    // status = 'ACTIVE' and expires_at <= now()) reads only the cards due, not the whole table.
    // An authorization (ACTIVE -> USED) writes no entry here: status and used_at are already
    // indexed (cards_pan_retention_idx), so that update was never HOT.
    index('cards_expiry_due_idx').on(t.expiresAt).where(sql`${t.status} = 'ACTIVE'`),
  ],
);

/** Card issuance idempotency, scoped to the issuer. */
export const cardIdempotencyKeys = cardsSchema.table(
  'idempotency_keys',
  {
    issuerId: text('issuer_id').notNull(),
    key: text('key').notNull(),
    fingerprint: text('fingerprint').notNull(),
    cardId: text('card_id')
      .notNull()
      .references(() => cards.id),
    createdAt: timestamp('created_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow(),
  },
  (t) => [primaryKey({ columns: [t.issuerId, t.key] }), index('card_idempotency_created_idx').on(t.createdAt)],
);

/**
 * What a reveal attempt by someone who may see the card came to (migration 0004): `REVEALED`, or
 * refused as `FORBIDDEN` (the issuing merchant) or `NOT_ACTIVE` (a card that is USED, EXPIRED or
 * CANCELED). A caller who may not see the card (NOT_FOUND) is not audited.
 */
export const revealOutcomes = ['REVEALED', 'FORBIDDEN', 'NOT_ACTIVE'] as const;
export type RevealOutcome = (typeof revealOutcomes)[number];

/** Every PAN reveal, and every refused attempt on a card the caller may see: who, when, through which request, what came of it. */
export const revealAudit = cardsSchema.table(
  'reveal_audit',
  {
    id: text('id').primaryKey(),
    cardId: text('card_id')
      .notNull()
      .references(() => cards.id),
    actorId: text('actor_id').notNull(),
    actorRole: text('actor_role').notNull(),
    requestId: text('request_id'),
    /** When the attempt was decided (the reveal, or its refusal). */
    revealedAt: timestamp('revealed_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow(),
    /** Migration 0004; rows written before it were all reveals. */
    outcome: text('outcome', { enum: revealOutcomes }).notNull().default('REVEALED'),
  },
  (t) => [
    index('reveal_audit_card_idx').on(t.cardId, t.revealedAt),
    // Migration 0003: the revealing principal's role (platform `Roles`).
    check('reveal_audit_actor_role_check', sql`${t.actorRole} in ('admin', 'merchant', 'user')`),
    // Migration 0004.
    check('reveal_audit_outcome_check', sql`${t.outcome} in ('REVEALED', 'FORBIDDEN', 'NOT_ACTIVE')`),
  ],
);

/** Counts of reveal attempts per actor per window; see the cards README. */
export const revealCounters = cardsSchema.table(
  'reveal_counters',
  {
    actorId: text('actor_id').notNull(),
    windowStart: timestamp('window_start', { withTimezone: true, mode: 'date' }).notNull(),
    count: integer('count').notNull(),
  },
  (t) => [primaryKey({ columns: [t.actorId, t.windowStart] })],
);
