import { type ByIds, inIdOrder } from '@ghostpay/db';
import DataLoader from 'dataloader';
import type { ApiKeyRow, UserLookups, UserRow } from './users.ts';

/**
 * A batch of ids looked up by `lookup`, skipping those PostgreSQL cannot compare with a text
 * column (a NUL byte, which it refuses in text; not a string): they are simply not found,
 * where the query would fail the whole batch with a 500.
 */
async function byStorableIds<Row extends { id: string }>(lookup: ByIds<Row>, ids: readonly string[]) {
  const storable = ids.filter((id) => typeof id === 'string' && !id.includes('\u0000'));
  return inIdOrder(ids, await lookup(storable, {}));
}

/** Per-request loaders: one query per batch for entity references and nested fields. */
export function createLoaders(lookups: UserLookups) {
  return {
    user: new DataLoader<string, UserRow | undefined>((ids) => byStorableIds(lookups.usersByIds, ids)),
    apiKey: new DataLoader<string, ApiKeyRow | undefined>((ids) => byStorableIds(lookups.apiKeysByIds, ids)),
    apiKeysOfUser: new DataLoader<string, ApiKeyRow[]>(async (userIds) => {
      const byUser = new Map<string, ApiKeyRow[]>();
      for (const row of await lookups.apiKeysByUserIds(userIds, {})) byUser.set(row.userId, [...(byUser.get(row.userId) ?? []), row]);
      return userIds.map((id) => byUser.get(id) ?? []);
    }),
  };
}

export type Loaders = ReturnType<typeof createLoaders>;
