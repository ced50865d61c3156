import { cards, chargeEvents, charges, clockAfterLock, type Database, type DeclineCode, newId, type Transaction } from '@ghostpay/db';
import { ForbiddenError, NotFoundError, type Principal } from '@ghostpay/platform';
import { eq, sql } from 'drizzle-orm';
import { notifyEvent } from './charge-events.ts';
import { type CreateChargeInput, requestFingerprint, validateCreateCharge } from './charge-input.ts';
import { type ChargeRow, toSnapshot } from './charge-record.ts';
import type { ChargesMetrics } from './charges-metrics.ts';
import { claimIdempotencyKey, completeIdempotencyKeySql, type IdempotencyScope, lockTimeoutAfterClaim } from './idempotency.ts';

export interface AuthorizeChargeDeps {
  db: Database;
  /** How long a duplicate request waits for its in-flight original. */
  idempotencyWaitMs: number;
  metrics?: ChargesMetrics;
}

export interface AuthorizeChargeResult {
  charge: ChargeRow;
  /** True when this is an idempotent replay of an earlier request. */
  replayed: boolean;
}

/**
 * Whether `principal` may charge a card issued by `issuerId`: admins any card, merchants
 * only the cards they issued. Anything else is indistinguishable from an unknown card.
 */
function mayCharge(principal: Principal, issuerId: string): boolean {
  return principal.role === 'admin' || (principal.role === 'merchant' && issuerId === principal.userId);
}

/**
 * Authorizes a charge on a single-use card in ONE transaction: the idempotency key claim,
 * the conditional card update (ACTIVE → USED when unexpired, same currency, amount within
 * the card's), the charge insert, its event and NOTIFY all commit together or not at all.
 * Under any concurrency exactly one charge per card succeeds: the card row's update is
 * the arbiter, and the partial unique index on charges backs it up.
 *
 * Four round trips on the authorized path: BEGIN, the claim (which also bounds lock waits),
 * one statement for everything else ({@link writeCharge}), COMMIT. A decline adds the card
 * read and a second write statement.
 */
export async function authorizeCharge(
  deps: AuthorizeChargeDeps,
  principal: Principal,
  input: CreateChargeInput,
  idempotencyKey: string,
): Promise<AuthorizeChargeResult> {
  // The scope check happens in the resolver; the role decides which cards are chargeable.
  if (principal.role !== 'admin' && principal.role !== 'merchant') throw new ForbiddenError('Only merchants and admins create charges');
  validateCreateCharge(input, idempotencyKey);
  const description = input.description ?? null;
  const scope: IdempotencyScope = {
    principalId: principal.userId,
    operation: 'create_charge',
    key: idempotencyKey,
    fingerprint: requestFingerprint('create_charge', { cardId: input.cardId, amount: input.amount, currency: input.currency, description }),
  };
  const isAdmin = principal.role === 'admin';

  const result = await deps.db
    .transaction(async (tx): Promise<AuthorizeChargeResult> => {
      const claim = await claimIdempotencyKey(tx, scope, deps.idempotencyWaitMs);
      if (claim.kind === 'replay') return { charge: claim.charge, replayed: true };

      // Every column of the new charge but one is known here: `now()` is the claim's, fixed for
      // the transaction. The exception is an authorization's `authorizedAt`/`updatedAt`, the
      // moment the card was taken, which only the statement knows (it may first wait for the
      // card row); the statement patches it into the event and the replay and returns it.
      const now = claim.now;
      const charge: ChargeRow = {
        id: newId('ch'),
        cardId: input.cardId,
        merchantId: principal.userId,
        amount: input.amount,
        currency: input.currency,
        status: 'AUTHORIZED',
        declineCode: null,
        refundedAmount: 0,
        description,
        createdAt: now,
        authorizedAt: now,
        settledAt: null,
        updatedAt: now,
      };
      // The hot path: one statement takes the card (ACTIVE → USED when every condition holds)
      // and, only if it did, writes the charge, its event, the NOTIFY and the replay.
      const takenAt = await writeCharge(tx, charge, scope, { issuerId: isAdmin ? null : principal.userId });
      if (takenAt) return { charge: { ...charge, authorizedAt: takenAt, updatedAt: takenAt }, replayed: false };

      // Not authorized: find out why. The card's status can only move away from ACTIVE, so a
      // plain read after the failed update (which waited for any concurrent writer) is decisive.
      const [card] = await tx
        .select({
          status: cards.status,
          issuerId: cards.issuerId,
          currency: cards.currency,
          amount: cards.amount,
          // The clock, as the conditional update read it (later, so an expiry it saw still holds).
          expired: sql<boolean>`${cards.expiresAt} <= clock_timestamp()`,
        })
        .from(cards)
        .where(eq(cards.id, input.cardId));
      // Throwing rolls back the idempotency claim too: nothing is recorded.
      if (!card || !mayCharge(principal, card.issuerId)) throw new NotFoundError('Card', input.cardId);
      const declined: ChargeRow = { ...charge, status: 'DECLINED', declineCode: declineCodeFor(card, input), authorizedAt: null };
      if (!(await writeCharge(tx, declined, scope, null))) throw new Error('declined charge insert wrote nothing');
      return { charge: declined, replayed: false };
    })
    .catch((error: unknown) => {
      throw lockTimeoutAfterClaim(error);
    });

  if (!result.replayed) deps.metrics?.chargesTotal.inc({ status: result.charge.status, decline_code: result.charge.declineCode ?? '' });
  return result;
}

/**
 * Writes a new charge and everything that commits with it in ONE statement (one round trip):
 * with `takeCard`, first the conditional card update (ACTIVE → USED when unexpired, same
 * currency, amount within the card's, issued by `issuerId` unless null), and the rest only
 * if it took the card; then the charge row, its event, the NOTIFY and the idempotency key's
 * completion with the replay snapshot. The event is stamped with the charge's `updated_at`, the
 * moment of the state it records (not the default `now()`, the transaction's start, which is
 * before any wait for the card). Returns when the charge was written (for a taken card,
 * the moment it was taken, which is its `authorized_at`, `updated_at` and the card's
 * `used_at`; otherwise the charge's `updatedAt`), or null when it was not.
 *
 * `charge` must be the row exactly as it will be stored, but for a taken card's moment: its
 * other timestamps are the transaction's `now()`, which the statement writes and the snapshot
 * repeats.
 */
async function writeCharge(
  tx: Transaction,
  charge: ChargeRow,
  scope: IdempotencyScope,
  takeCard: { issuerId: string | null } | null,
): Promise<Date | null> {
  const snapshot = JSON.stringify(toSnapshot(charge));
  const issuedBy = takeCard?.issuerId ? sql`and issuer_id = ${takeCard.issuerId}` : sql``;
  // The card is judged and stamped when its row is ours, by the clock: `now()` is the
  // transaction's start, and the statement may first wait (for the key, for another writer of
  // the card) past the card's expiry, or long enough to shorten the settlement delay that runs
  // from `authorized_at`. The row is locked first (`locked`), then the clock read once
  // (`held`, whose projection runs after the lock is granted; volatile, so materialized); the
  // update reads both as initplans. So the reading comes after any wait, whether the other
  // writer updated the row or only locked it (then PostgreSQL would not re-check an update's
  // condition after the wait). `taken.at` is the stamp at the millisecond precision the
  // snapshot and a JavaScript Date hold (never later than the reading expiry was judged by).
  const source = takeCard
    ? sql`locked as materialized (
        select id from ${cards} where id = ${charge.cardId} ${issuedBy} for no key update
      ),
      held as materialized (
        select id, ${clockAfterLock()} as at from locked
      ),
      taken as (
        update ${cards} set status = 'USED', used_at = date_trunc('milliseconds', (select at from held))
        where id = (select id from held) and status = 'ACTIVE' and expires_at > (select at from held)
          and currency = ${charge.currency} and amount >= ${charge.amount}
          ${issuedBy}
        returning id, used_at as at
      ),`
    : sql`taken as (select ${charge.cardId}::text as id, now() as at),`;
  // The snapshot with a taken card's moment as `authorizedAt` and `updatedAt` (toISOString's format).
  const stored = takeCard
    ? sql`(${snapshot}::jsonb || (select jsonb_build_object('authorizedAt', iso, 'updatedAt', iso)
        from (select to_char(at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') as iso from taken) as stamp))`
    : sql`${snapshot}::jsonb`;
  const result = (await tx.execute(sql`
    with ${source}
    charge as (
      insert into ${charges} (id, card_id, merchant_id, amount, currency, status, decline_code, description, created_at, authorized_at, updated_at)
      select ${charge.id}, taken.id, ${charge.merchantId}, ${charge.amount}::bigint, ${charge.currency}, ${charge.status}, ${charge.declineCode}::text,
        ${charge.description}::text, now(), ${takeCard ? sql`taken.at` : sql`null`}, ${takeCard ? sql`taken.at` : sql`now()`}
      from taken
      returning id, status, updated_at
    ),
    event as (
      insert into ${chargeEvents} (charge_id, status, data, created_at)
      select id, status, ${stored}, updated_at from charge
      returning id, charge_id, status
    ),
    completed as (${completeIdempotencyKeySql(scope, sql`(select id from charge)`, stored, sql`exists (select 1 from charge)`)})
    select event.id, ${notifyEvent}, (select at from taken) as at from event
  `)) as unknown as { rows: Array<{ at: string | Date }> };
  const [written] = result.rows;
  // Drivers give the timestamptz as text (drizzle's raw mode) or a Date.
  return written ? new Date(written.at) : null;
}

/** The decline code for a card the conditional update refused, most fundamental reason first. */
export function declineCodeFor(
  card: { status: string; currency: string; amount: number; expired: boolean },
  input: { amount: number; currency: string },
): DeclineCode {
  if (card.status === 'USED') return 'CARD_ALREADY_USED';
  if (card.status === 'CANCELED') return 'CARD_CANCELED';
  if (card.status === 'EXPIRED' || card.expired) return 'CARD_EXPIRED';
  if (card.currency !== input.currency) return 'CURRENCY_MISMATCH';
  if (Number(card.amount) < input.amount) return 'AMOUNT_EXCEEDS_LIMIT';
  // An ACTIVE, matching card the update did not take cannot happen (its status only leaves ACTIVE).
  throw new Error('card refused by the conditional update but matches every condition');
}
