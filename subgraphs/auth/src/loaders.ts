import DataLoader from 'dataloader';
import type { ApiKeyRow, UserLookups, UserRow } from './users.ts';

/** Per-request loaders: one query per batch for entity references and nested fields. */
export function createLoaders(lookups: UserLookups) {
  return {
    user: new DataLoader<string, UserRow | undefined>(async (ids) => {
      const byId = new Map((await lookups.usersByIds(ids, {})).map((row) => [row.id, row]));
      return ids.map((id) => byId.get(id));
    }),
    apiKey: new DataLoader<string, ApiKeyRow | undefined>(async (ids) => {
      const byId = new Map((await lookups.apiKeysByIds(ids, {})).map((row) => [row.id, row]));
      return ids.map((id) => byId.get(id));
    }),
    apiKeysOfUser: new DataLoader<string, ApiKeyRow[]>(async (userIds) => {
      const byUser = new Map<string, ApiKeyRow[]>();
      for (const row of await lookups.apiKeysByUserIds(userIds, {})) byUser.set(row.userId, [...(byUser.get(row.userId) ?? []), row]);
      return userIds.map((id) => byUser.get(id) ?? []);
    }),
  };
}

export type Loaders = ReturnType<typeof createLoaders>;
