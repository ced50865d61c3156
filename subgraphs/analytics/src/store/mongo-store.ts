import { MongoClient } from 'mongodb';
import type { DocumentStore, StoreDb } from './document-store.ts';

export interface MongoStoreOptions {
  url: string;
  /** Database name. @default `ghostpay_analytics` */
  database?: string;
  /** Driver connect/selection timeout. @default 5000 */
  serverSelectionTimeoutMs?: number;
}

/** Connects the official `mongodb` driver; its `Db` is the `StoreDb` the analytics code runs on, unchanged. */
export async function connectMongoStore(options: MongoStoreOptions): Promise<DocumentStore> {
  const client = new MongoClient(options.url, {
    serverSelectionTimeoutMS: options.serverSelectionTimeoutMs ?? 5_000,
    appName: 'ghostpay-analytics',
  });
  await client.connect();
  const mongoDb = client.db(options.database ?? 'ghostpay_analytics');
  // The driver's Db is used as it is, no wrapper: the same bulkWrite/find/createIndex calls reach
  // the driver. The cast is only for the type checker: the driver types filters and updates per
  // schema (`UpdateFilter<TSchema>` rejects `$inc: Record<string, number>` on an untyped
  // `Document`), while the subset interface types them loosely.
  const db = mongoDb as unknown as StoreDb;
  return {
    kind: 'mongodb',
    db,
    async ping() {
      await mongoDb.command({ ping: 1 });
    },
    async close() {
      await client.close();
    },
  };
}
