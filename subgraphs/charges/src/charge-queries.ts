import { type ChargeStatus, cards, charges, type Database, type IdsCondition, type PreparedLookup, preparedByIds } from '@ghostpay/db';
import { BadUserInputError, type Principal } from '@ghostpay/platform';
import { and, desc, eq, or, type Placeholder, type SQL, sql } from 'drizzle-orm';
import { isPossibleId } from './charge-input.ts';
import type { ChargeRow } from './charge-record.ts';

/** The visibility condition for a caller who is not an admin (a user id, or a placeholder for one). */
function visibleToUser(userId: string | Placeholder): SQL | undefined {
  return or(eq(charges.merchantId, userId), eq(cards.ownerId, userId), eq(cards.issuerId, userId));
}

/**
 * Who sees a charge: admins all; otherwise the merchant who made it, and the owner and the
 * issuer of its card. Callers who may not see a charge get NOT_FOUND, as if it did not exist.
 */
function visibleTo(principal: Principal): SQL | undefined {
  return principal.role === 'admin' ? undefined : visibleToUser(principal.userId);
}

/** The loaders' lookups: the charges a caller may see, by charge id and by card id. */
export interface ChargeLookups {
  byIds(principal: Principal, ids: readonly string[]): Promise<ChargeRow[]>;
  /** Newest first. */
  byCardIds(principal: Principal, cardIds: readonly string[]): Promise<ChargeRow[]>;
}

/**
 * The lookups built into SQL once per database (`preparedByIds`): for each, one query for
 * admins and one with the visibility condition, the caller's id a parameter, so a
 * connection prepares at most eight statement texts for them whatever the batch sizes.
 */
export function createChargeLookups(db: Database): ChargeLookups {
  type Values = { userId: string };
  const visible = (condition: SQL, admin: boolean) =>
    db
      .select({ charge: charges })
      .from(charges)
      .innerJoin(cards, eq(cards.id, charges.cardId))
      .where(and(condition, admin ? undefined : visibleToUser(sql.placeholder('userId'))));
  const perRole = (build: (idsCondition: IdsCondition, admin: boolean) => PreparedLookup<{ charge: ChargeRow }>) => ({
    admin: preparedByIds<{ charge: ChargeRow }, Values>((idsCondition) => build(idsCondition, true)),
    caller: preparedByIds<{ charge: ChargeRow }, Values>((idsCondition) => build(idsCondition, false)),
  });
  const byIds = perRole((idsCondition, admin) => visible(idsCondition(charges.id), admin).prepare(''));
  const byCardIds = perRole((idsCondition, admin) =>
    visible(idsCondition(charges.cardId), admin).orderBy(desc(charges.createdAt), desc(charges.id)).prepare(''),
  );
  const run = async (lookup: typeof byIds, principal: Principal, ids: readonly string[]) => {
    // An id no row can have is not found; with a NUL it would fail the whole batch's query.
    const possible = ids.filter(isPossibleId);
    const rows = await lookup[principal.role === 'admin' ? 'admin' : 'caller'](possible, { userId: principal.userId });
    return rows.map((row) => row.charge);
  };
  return {
    byIds: (principal, ids) => run(byIds, principal, ids),
    byCardIds: (principal, cardIds) => run(byCardIds, principal, cardIds),
  };
}

export interface ChargesFilter {
  status?: ChargeStatus | null;
  cardId?: string | null;
}

export interface ChargePage {
  nodes: ChargeRow[];
  pageInfo: { hasNextPage: boolean; endCursor: string | null };
}

export const defaultPageSize = 20;
export const maxPageSize = 100;

/** Cursor: the last row's (created_at at microsecond precision, id), base64url JSON. Opaque to clients. */
function encodeCursor(createdAt: string, id: string): string {
  return Buffer.from(JSON.stringify([createdAt, id])).toString('base64url');
}

/**
 * Whether `text` (`YYYY-MM-DDTHH:MM:SS.ffffffZ`, as encodeCursor writes it) names a real instant
 * PostgreSQL accepts: a month 13, a February 30 or the year 0 of a crafted cursor otherwise
 * reached the `::timestamptz` cast and failed the query (INTERNAL_SERVER_ERROR).
 */
function isCursorInstant(text: string): boolean {
  const match = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})\.\d{6}Z$/.exec(text);
  if (!match) return false;
  const [year, month, day, hour, minute, second] = match.slice(1).map(Number) as [number, number, number, number, number, number];
  if (year < 1) return false;
  const date = new Date(0);
  date.setUTCFullYear(year, month - 1, day);
  date.setUTCHours(hour, minute, second);
  return (
    date.getUTCFullYear() === year &&
    date.getUTCMonth() === month - 1 &&
    date.getUTCDate() === day &&
    date.getUTCHours() === hour &&
    date.getUTCMinutes() === minute &&
    date.getUTCSeconds() === second
  );
}

function decodeCursor(cursor: string): { createdAt: string; id: string } {
  try {
    const value: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    if (
      Array.isArray(value) &&
      value.length === 2 &&
      typeof value[0] === 'string' &&
      isCursorInstant(value[0]) &&
      typeof value[1] === 'string' &&
      isPossibleId(value[1])
    ) {
      return { createdAt: value[0], id: value[1] };
    }
  } catch {
    // fall through to the input error
  }
  throw new BadUserInputError([{ field: 'after', message: 'is not a valid cursor' }]);
}

/** A page of the charges the caller may see, newest first (keyset pagination on created_at, id). */
export async function listCharges(
  db: Database,
  principal: Principal,
  filter: ChargesFilter | null | undefined,
  first: number | null | undefined,
  after: string | null | undefined,
): Promise<ChargePage> {
  const limit = first ?? defaultPageSize;
  if (!Number.isInteger(limit) || limit < 1 || limit > maxPageSize) {
    throw new BadUserInputError([{ field: 'first', message: `must be between 1 and ${maxPageSize}` }]);
  }
  if (filter?.cardId && !isPossibleId(filter.cardId))
    throw new BadUserInputError([{ field: 'filter.cardId', message: 'is not a card id' }]);
  const cursor = after ? decodeCursor(after) : undefined;
  const createdAtText = sql<string>`to_char(${charges.createdAt} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;
  const rows = await db
    .select({ charge: charges, createdAtText })
    .from(charges)
    .innerJoin(cards, eq(cards.id, charges.cardId))
    .where(
      and(
        visibleTo(principal),
        filter?.status ? eq(charges.status, filter.status) : undefined,
        filter?.cardId ? eq(charges.cardId, filter.cardId) : undefined,
        cursor ? sql`(${charges.createdAt}, ${charges.id}) < (${cursor.createdAt}::timestamptz, ${cursor.id})` : undefined,
      ),
    )
    .orderBy(desc(charges.createdAt), desc(charges.id))
    .limit(limit + 1);
  const page = rows.slice(0, limit);
  const last = page.at(-1);
  return {
    nodes: page.map((row) => row.charge),
    pageInfo: { hasNextPage: rows.length > limit, endCursor: last ? encodeCursor(last.createdAtText, last.charge.id) : null },
  };
}
