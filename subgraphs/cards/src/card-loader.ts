import { cards, type Database } from '@ghostpay/db';
import DataLoader from 'dataloader';
import { inArray } from 'drizzle-orm';
import type { CardRow } from './card-view.ts';

/**
 * Per-request loader: every card id asked for in one tick (e.g. the router's `_entities`
 * with 50 representations) becomes one `where id in (...)` query.
 */
export function createCardLoader(db: Database): DataLoader<string, CardRow | undefined> {
  return new DataLoader<string, CardRow | undefined>(
    async (ids) => {
      const rows = await db
        .select()
        .from(cards)
        .where(inArray(cards.id, [...ids]));
      const byId = new Map(rows.map((row) => [row.id, row]));
      return ids.map((id) => byId.get(id));
    },
    { maxBatchSize: 500 },
  );
}
