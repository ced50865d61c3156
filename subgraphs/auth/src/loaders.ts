import { inIdOrder } from '@ghostpay/db';
import DataLoader from 'dataloader';
import type { ApiKeyRow, UserLookups, UserRow } from './users.ts';

/** Per-request loaders: one query per batch for entity references and nested fields. */
export function createLoaders(lookups: UserLookups) {
  return {
    user: new DataLoader<string, UserRow | undefined>(async (ids) => inIdOrder(ids, await lookups.usersByIds(ids, {}))),
    apiKey: new DataLoader<string, ApiKeyRow | undefined>(async (ids) => inIdOrder(ids, await lookups.apiKeysByIds(ids, {}))),
    apiKeysOfUser: new DataLoader<string, ApiKeyRow[]>(async (userIds) => {
      const byUser = new Map<string, ApiKeyRow[]>();
      for (const row of await lookups.apiKeysByUserIds(userIds, {})) byUser.set(row.userId, [...(byUser.get(row.userId) ?? []), row]);
      return userIds.map((id) => byUser.get(id) ?? []);
    }),
  };
}

export type Loaders = ReturnType<typeof createLoaders>;
