import { cards, type Database, inIdOrder, preparedByIds } from '@ghostpay/db';
import DataLoader from 'dataloader';
import { sql } from 'drizzle-orm';
import { cardColumnsJudgedBy, type JudgedCardRow } from './card-view.ts';
import { isPossibleId } from './storable-text.ts';

/**
 * Cards by id, in no particular order, each with `expired` by the database's clock; unknown ids
 * (and ids no row can have) are left out.
 */
export type CardsByIds = (ids: readonly string[]) => Promise<JudgedCardRow[]>;

/**
 * The cards loader's query, built once per database (`preparedByIds`, bench/RESULTS.md change 33).
 * Expiry is judged by the database's `now()` in the same statement (`cardColumnsJudgedBy`), as
 * the `cards` filter judges it: one boolean column more, no other query.
 */
export function createCardsByIds(db: Database): CardsByIds {
  const columns = cardColumnsJudgedBy(sql`now()`);
  const byIds = preparedByIds((idsCondition) => db.select(columns).from(cards).where(idsCondition(cards.id)).prepare(''));
  // An id PostgreSQL cannot store is not found; bound into the query it would fail the whole batch.
  return (ids) => byIds(ids.filter(isPossibleId), {});
}

/**
 * Per-request loader: every card id asked for in one tick (e.g. the router's `_entities`
 * with 50 representations) becomes one query.
 */
export function createCardLoader(cardsByIds: CardsByIds): DataLoader<string, JudgedCardRow | undefined> {
  return new DataLoader<string, JudgedCardRow | undefined>(async (ids) => inIdOrder(ids, await cardsByIds(ids)), { maxBatchSize: 500 });
}
