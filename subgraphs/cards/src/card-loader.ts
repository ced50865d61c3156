import { cards, type Database, inIdOrder, preparedByIds } from '@ghostpay/db';
import DataLoader from 'dataloader';
import type { CardRow } from './card-view.ts';
import { isPossibleId } from './storable-text.ts';

/** Cards by id, in no particular order; unknown ids (and ids no row can have) are left out. */
export type CardsByIds = (ids: readonly string[]) => Promise<CardRow[]>;

/** The cards loader's query, built once per database (`preparedByIds`, bench/RESULTS.md change 33). */
export function createCardsByIds(db: Database): CardsByIds {
  const byIds = preparedByIds((idsCondition) => db.select().from(cards).where(idsCondition(cards.id)).prepare(''));
  // An id PostgreSQL cannot store is not found; bound into the query it would fail the whole batch.
  return (ids) => byIds(ids.filter(isPossibleId), {});
}

/**
 * Per-request loader: every card id asked for in one tick (e.g. the router's `_entities`
 * with 50 representations) becomes one query.
 */
export function createCardLoader(cardsByIds: CardsByIds): DataLoader<string, CardRow | undefined> {
  return new DataLoader<string, CardRow | undefined>(async (ids) => inIdOrder(ids, await cardsByIds(ids)), { maxBatchSize: 500 });
}
