import { createHash } from 'node:crypto';
import { cardIdempotencyKeys, cards, type Database, newId, users } from '@ghostpay/db';
import {
  BadUserInputError,
  currencyExponent,
  ErrorCode,
  type FieldProblem,
  GhostPayError,
  IdempotencyKeyReusedError,
  keyContainsCardNumber,
  type Logger,
  type Principal,
  unstorableReason,
} from '@ghostpay/platform';
import { and, eq, sql } from 'drizzle-orm';

import { cardColumnsJudgedBy, type JudgedCardRow } from './card-view.ts';
import type { CardsConfig } from './config.ts';
import { brandOf, generatePan } from './pan.ts';
import { encryptPan, type PanSecrets, panFingerprint } from './pan-crypto.ts';
import { isPossibleId } from './storable-text.ts';

export interface IssueCardInput {
  userId: string;
  amount: number;
  currency: string;
  expiresInSeconds?: number | null;
}

export type IssueCardLimits = Pick<
  CardsConfig,
  'CARD_MAX_AMOUNT' | 'CARD_MIN_EXPIRES_IN_SECONDS' | 'CARD_MAX_EXPIRES_IN_SECONDS' | 'CARD_DEFAULT_EXPIRES_IN_SECONDS' | 'CARD_BIN'
>;

export interface IssueCardDeps {
  db: Database;
  panSecrets: PanSecrets;
  limits: IssueCardLimits;
  logger: Logger;
  /** Draws a candidate PAN. @default a random Luhn-valid PAN under `limits.CARD_BIN` (tests force collisions with it) */
  drawPan?: () => string;
}

/** Longest accepted idempotency key (Stripe's limit). */
export const maxIdempotencyKeyLength = 255;
/** How many fresh PANs to try when one collides with an existing card's fingerprint. */
const panAttempts = 8;

/** Thrown inside the transaction to roll the new card back when another request owns the key. */
class IdempotencyKeyTaken extends Error {}

/** The key this request met was pruned before it could be re-read: retry with the same key. */
class IdempotencyKeyPrunedError extends GhostPayError {
  constructor() {
    super(
      ErrorCode.IDEMPOTENCY_KEY_IN_USE,
      'The idempotency key expired while this request was in progress and nothing was issued; retry with the same key in 1 s',
      { extensions: { retryAfter: 1 } },
    );
  }
}

/**
 * Checks every field and reports all problems at once, each naming its field. The owner
 * lookup runs only when the id is otherwise well-formed.
 */
export async function validateIssueCard(
  db: Database,
  limits: IssueCardLimits,
  input: IssueCardInput,
  idempotencyKey: string | null | undefined,
): Promise<void> {
  const problems: FieldProblem[] = [];
  if (!Number.isSafeInteger(input.amount) || input.amount <= 0) {
    problems.push({ field: 'input.amount', message: 'must be a positive integer in minor units' });
  } else if (input.amount > limits.CARD_MAX_AMOUNT) {
    problems.push({ field: 'input.amount', message: `must not exceed ${limits.CARD_MAX_AMOUNT} minor units` });
  }
  if (currencyExponent(input.currency) === undefined) {
    problems.push({
      field: 'input.currency',
      message: /^[a-z]{3}$/.test(input.currency)
        ? 'must be an upper-case ISO 4217 code'
        : 'must be an active ISO 4217 currency code (e.g. USD)',
    });
  }
  if (input.expiresInSeconds !== undefined && input.expiresInSeconds !== null) {
    const s = input.expiresInSeconds;
    if (!Number.isSafeInteger(s) || s < limits.CARD_MIN_EXPIRES_IN_SECONDS || s > limits.CARD_MAX_EXPIRES_IN_SECONDS) {
      problems.push({
        field: 'input.expiresInSeconds',
        message: `must be between ${limits.CARD_MIN_EXPIRES_IN_SECONDS} and ${limits.CARD_MAX_EXPIRES_IN_SECONDS} seconds`,
      });
    }
  }
  if (idempotencyKey !== undefined && idempotencyKey !== null) {
    const unstorable = unstorableReason(idempotencyKey);
    if (idempotencyKey.length === 0 || idempotencyKey.length > maxIdempotencyKeyLength) {
      problems.push({ field: 'idempotencyKey', message: `must be 1 to ${maxIdempotencyKeyLength} characters` });
    } else if (unstorable) {
      problems.push({ field: 'idempotencyKey', message: unstorable });
    } else if (keyContainsCardNumber(idempotencyKey)) {
      problems.push({ field: 'idempotencyKey', message: 'must not contain a card number (it is stored in clear)' });
    }
  }
  if (!isPossibleId(input.userId)) {
    problems.push({ field: 'input.userId', message: 'no such user' });
  } else {
    const [owner] = await db.select({ id: users.id }).from(users).where(eq(users.id, input.userId)).limit(1);
    if (!owner) problems.push({ field: 'input.userId', message: 'no such user' });
  }
  if (problems.length > 0) throw new BadUserInputError(problems);
}

/** What makes two issuance requests "the same": the caller's input, canonically ordered. */
export function issueRequestFingerprint(input: IssueCardInput): string {
  const canonical = JSON.stringify([input.userId, input.amount, input.currency, input.expiresInSeconds ?? null]);
  return createHash('sha256').update(canonical).digest('hex');
}

/**
 * Issues a card for `principal` (a merchant or admin; the resolver checks the role).
 *
 * Idempotency (Stripe semantics, scoped to the issuer): one transaction inserts the card and
 * then `insert ... on conflict do nothing` the key. When the key already exists — possibly
 * committed a moment ago by a concurrent duplicate, whose uncommitted row made our insert
 * wait — the transaction rolls back (no orphan card) and the stored key is re-read: same
 * fingerprint → that card, different → IDEMPOTENCY_KEY_REUSED. Concurrent duplicates thus
 * never create two rows.
 */
export async function issueCard(
  deps: IssueCardDeps,
  principal: Principal,
  input: IssueCardInput,
  idempotencyKey?: string | null,
): Promise<JudgedCardRow> {
  const { db, limits } = deps;
  await validateIssueCard(db, limits, input, idempotencyKey);
  const fingerprint = issueRequestFingerprint(input);

  if (idempotencyKey) {
    const replay = await replayIdempotent(db, principal.userId, idempotencyKey, fingerprint);
    if (replay) return replay;
  }

  const lifetime = input.expiresInSeconds ?? limits.CARD_DEFAULT_EXPIRES_IN_SECONDS;
  try {
    return await db.transaction(async (tx) => {
      const card = await insertCardWithUniquePan(deps, tx as unknown as Database, principal, input, lifetime);
      if (idempotencyKey) {
        const claimed = await tx
          .insert(cardIdempotencyKeys)
          .values({ issuerId: principal.userId, key: idempotencyKey, fingerprint, cardId: card.id })
          .onConflictDoNothing()
          .returning({ cardId: cardIdempotencyKeys.cardId });
        if (claimed.length === 0) throw new IdempotencyKeyTaken();
      }
      return card;
    });
  } catch (error) {
    if (!(error instanceof IdempotencyKeyTaken) || !idempotencyKey) throw error;
    const replay = await replayIdempotent(db, principal.userId, idempotencyKey, fingerprint);
    // The key row can vanish between the conflict and this read: housekeeping prunes keys
    // older than IDEMPOTENCY_RETENTION_HOURS whether or not their card exists. Only a retry
    // arriving just as its key passes the retention can meet that; it fails here, and the
    // client's next retry finds no key and is a new request (as the README says). Told as a
    // retryable IDEMPOTENCY_KEY_IN_USE (409, retryAfter 1 s), not an internal error: this attempt
    // rolled back (no card), and retrying with the same key is exactly what to do.
    if (!replay) throw new IdempotencyKeyPrunedError();
    return replay;
  }
}

async function replayIdempotent(db: Database, issuerId: string, key: string, fingerprint: string): Promise<JudgedCardRow | undefined> {
  // The card as it is now, which may have expired since it was issued (by the database's clock).
  const [row] = await db
    .select({ fingerprint: cardIdempotencyKeys.fingerprint, card: cardColumnsJudgedBy(sql`now()`) })
    .from(cardIdempotencyKeys)
    .innerJoin(cards, eq(cards.id, cardIdempotencyKeys.cardId))
    .where(and(eq(cardIdempotencyKeys.issuerId, issuerId), eq(cardIdempotencyKeys.key, key)))
    .limit(1);
  if (!row) return undefined;
  if (row.fingerprint !== fingerprint) throw new IdempotencyKeyReusedError();
  return row.card;
}

/**
 * Draws PANs until one's fingerprint is new. `on conflict (pan_fingerprint) do nothing`
 * keeps the transaction usable after a collision (a unique violation would abort it).
 */
async function insertCardWithUniquePan(
  deps: IssueCardDeps,
  tx: Database,
  principal: Principal,
  input: IssueCardInput,
  lifetimeSeconds: number,
): Promise<JudgedCardRow> {
  const { panSecrets, limits } = deps;
  const keyring = panSecrets.keyring();
  const fingerprintKey = panSecrets.fingerprintKey();
  // The expiry is the database's now() plus the lifetime, never this server's clock: the
  // database judges it (charges, cancels, the sweeper), and a replica whose clock is behind
  // would issue cards that are already expired there (or, ahead, live too long).
  const expiresAt = sql<Date>`date_trunc('milliseconds', now() + make_interval(secs => ${lifetimeSeconds}))`;
  const expiresPart = (field: 'month' | 'year') => sql<number>`extract(${sql.raw(field)} from (${expiresAt}) at time zone 'UTC')::int`;
  for (let attempt = 1; attempt <= panAttempts; attempt++) {
    const id = newId('card');
    const pan = deps.drawPan ? deps.drawPan() : generatePan(limits.CARD_BIN);
    const encrypted = encryptPan(keyring, id, pan);
    const [row] = await tx
      .insert(cards)
      .values({
        id,
        ownerId: input.userId,
        issuerId: principal.userId,
        panCiphertext: encrypted.ciphertext,
        panKeyId: encrypted.keyId,
        panFingerprint: panFingerprint(fingerprintKey, pan),
        bin: pan.slice(0, 6),
        last4: pan.slice(-4),
        brand: brandOf(limits.CARD_BIN),
        expMonth: expiresPart('month'),
        expYear: expiresPart('year'),
        expiresAt,
        amount: input.amount,
        currency: input.currency,
      })
      .onConflictDoNothing({ target: cards.panFingerprint })
      .returning(cardColumnsJudgedBy(sql`now()`));
    if (row) return row;
    // Never log the PAN; the attempt count is enough to notice a crowded BIN.
    deps.logger.warn({ attempt }, 'generated PAN collided with an existing card; drawing another');
  }
  throw new Error(`could not draw a unique PAN in ${panAttempts} attempts; the BIN range may be exhausted`);
}
