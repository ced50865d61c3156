import { cards, type Database } from '@ghostpay/db';
import DataLoader from 'dataloader';
import { eq, sql } from 'drizzle-orm';
import type { CardRow } from './card-view.ts';

/** Cards by id, in no particular order; unknown ids are left out. */
export type CardsByIds = (ids: readonly string[]) => Promise<CardRow[]>;

/**
 * The cards queries, built into SQL once per database rather than on every load: drizzle's
 * query builder was 22% of the cards process's profile samples in the bench's card(id) reads
 * (bench/RESULTS.md, change 33). A batch of one (a client reading one card) is `id = $1`; a
 * larger one is `id = any($1)`, one statement text for every batch size (an `in (...)` list has
 * a text per length), so two prepared statements per connection in all. `any` is not used for
 * one id: PostgreSQL spends ~10 µs more per query on the array than on `id = $1`. The empty
 * name leaves naming to the pool (`preparingClient`, `DATABASE_PREPARED_STATEMENTS`).
 */
export function createCardsByIds(db: Database): CardsByIds {
  const one = db
    .select()
    .from(cards)
    .where(eq(cards.id, sql.placeholder('id')))
    .prepare('');
  const many = db
    .select()
    .from(cards)
    .where(sql`${cards.id} = any(${sql.placeholder('ids')}::text[])`)
    .prepare('');
  return (ids) => (ids.length === 1 ? one.execute({ id: ids[0] }) : many.execute({ ids: [...ids] }));
}

/**
 * Per-request loader: every card id asked for in one tick (e.g. the router's `_entities`
 * with 50 representations) becomes one query.
 */
export function createCardLoader(cardsByIds: CardsByIds): DataLoader<string, CardRow | undefined> {
  return new DataLoader<string, CardRow | undefined>(
    async (ids) => {
      const byId = new Map((await cardsByIds(ids)).map((row) => [row.id, row]));
      return ids.map((id) => byId.get(id));
    },
    { maxBatchSize: 500 },
  );
}
