import { type CardStatus, cards, type Database } from '@ghostpay/db';
import { BadUserInputError, type Principal } from '@ghostpay/platform';
import { and, desc, eq, gt, lte, or, type SQL, sql } from 'drizzle-orm';
import { alias } from 'drizzle-orm/pg-core';
import { visibleCardsCondition } from './card-access.ts';
import { type CardView, cardColumnsJudgedBy, toCardView } from './card-view.ts';
import { isPossibleId } from './storable-text.ts';

export interface CardFilter {
  status?: CardStatus | null;
  userId?: string | null;
}

export interface CardConnection {
  edges: { cursor: string; node: CardView }[];
  pageInfo: { hasNextPage: boolean; endCursor: string | null };
}

/** Page size bounds for `cards` and `User.cards`. */
export const maxPageSize = 100;

/** Cursors are opaque: base64url of the last card's id. Order is (created_at, id) descending. */
export function encodeCursor(cardId: string): string {
  return Buffer.from(`card:${cardId}`, 'utf8').toString('base64url');
}

export function decodeCursor(cursor: string): string {
  const decoded = Buffer.from(cursor, 'base64url').toString('utf8');
  if (!/^card:card_[0-9A-Za-z]{22}$/.test(decoded)) throw new BadUserInputError([{ field: 'after', message: 'is not a cursor' }]);
  return decoded.slice('card:'.length);
}

/**
 * The stored status condition for the status a reader will see (expiry is computed on read, by
 * the database's `now()`, as each row's `expired` is).
 */
function statusCondition(status: CardStatus): SQL {
  const now = sql`now()`;
  if (status === 'ACTIVE') return and(eq(cards.status, 'ACTIVE'), gt(cards.expiresAt, now))!;
  if (status === 'EXPIRED') return or(eq(cards.status, 'EXPIRED'), and(eq(cards.status, 'ACTIVE'), lte(cards.expiresAt, now)))!;
  return eq(cards.status, status);
}

/**
 * Cards the principal may see, newest first, keyset-paginated. The cursor's position is read
 * from the row it names (a subquery), so timestamps keep their microsecond precision. A
 * well-formed cursor naming no card the caller may see gives an empty page.
 */
export async function listCards(
  db: Database,
  principal: Principal,
  options: { filter?: CardFilter | null; first?: number | null; after?: string | null },
): Promise<CardConnection> {
  const first = options.first ?? 20;
  if (!Number.isInteger(first) || first < 1 || first > maxPageSize) {
    throw new BadUserInputError([{ field: 'first', message: `must be between 1 and ${maxPageSize}` }]);
  }
  const userId = options.filter?.userId;
  if (userId && !isPossibleId(userId)) throw new BadUserInputError([{ field: 'filter.userId', message: 'is not a user id' }]);
  const conditions: SQL[] = [visibleCardsCondition(principal)];
  if (options.filter?.userId) conditions.push(eq(cards.ownerId, options.filter.userId));
  if (options.filter?.status) conditions.push(statusCondition(options.filter.status));
  if (options.after) {
    const afterId = decodeCursor(options.after);
    // The cursor's row is read under the same visibility rule as the page: a cursor naming a
    // card the caller may not see finds no row, exactly like one naming no card (an empty
    // page), so it cannot probe another merchant's card for its existence or creation time.
    const c = alias(cards, 'cursor_card');
    const position = db
      .select({ createdAt: c.createdAt, id: c.id })
      .from(c)
      .where(and(eq(c.id, afterId), visibleCardsCondition(principal, c)));
    conditions.push(sql`(${cards.createdAt}, ${cards.id}) < (${position})`);
  }
  // Each row's `expired` by the same `now()` the status filter used.
  const rows = await db
    .select(cardColumnsJudgedBy(sql`now()`))
    .from(cards)
    .where(and(...conditions))
    .orderBy(desc(cards.createdAt), desc(cards.id))
    .limit(first + 1);
  const page = rows.slice(0, first);
  const edges = page.map((row) => ({ cursor: encodeCursor(row.id), node: toCardView(row) }));
  return { edges, pageInfo: { hasNextPage: rows.length > first, endCursor: edges.at(-1)?.cursor ?? null } };
}
