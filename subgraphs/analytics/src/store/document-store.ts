/**
 * The subset of the official `mongodb` driver's `Db`/`Collection` API the analytics code uses.
 * Written as an interface so the same analytics code runs on a real `mongodb` `Db` (which
 * satisfies it structurally, see `mongo-store.ts`) and on the embedded store
 * (`embedded-store.ts`), which implements exactly this subset and nothing more.
 *
 * Used operators: filters with implicit equality, `$eq`, `$ne`, `$gt`, `$gte`, `$lt`, `$lte`,
 * `$in`, `$nin`, `$exists`, `$or`, `$and`; updates with `$set`, `$setOnInsert`, `$inc`, `$max`.
 */
export type StoreDocument = Record<string, unknown>;
export type StoreFilter = Record<string, unknown>;

export interface StoreUpdate {
  $set?: StoreDocument;
  $setOnInsert?: StoreDocument;
  $inc?: Record<string, number>;
  $max?: StoreDocument;
}

export type StoreBulkOperation =
  | { insertOne: { document: StoreDocument } }
  | { updateOne: { filter: StoreFilter; update: StoreUpdate; upsert?: boolean } };

export interface StoreBulkResult {
  insertedCount: number;
  matchedCount: number;
  modifiedCount: number;
  upsertedCount: number;
  /** Operation index → `_id` of the document that operation inserted by upsert. */
  upsertedIds: { [index: number]: unknown };
}

export type StoreSort = Record<string, 1 | -1>;

export interface StoreCursor {
  sort(spec: StoreSort): StoreCursor;
  limit(count: number): StoreCursor;
  toArray(): Promise<StoreDocument[]>;
}

export interface StoreIndexOptions {
  name?: string;
  unique?: boolean;
  /** TTL: documents expire this many seconds after the Date in the (single) indexed field. */
  expireAfterSeconds?: number;
}

export interface StoreCollection {
  /** Always called with `{ ordered: false }`: independent writes, one round trip. */
  bulkWrite(operations: StoreBulkOperation[], options: { ordered: false }): Promise<StoreBulkResult>;
  find(filter: StoreFilter): StoreCursor;
  createIndex(keys: StoreSort, options?: StoreIndexOptions): Promise<string>;
}

export interface StoreDb {
  collection(name: string): StoreCollection;
}

/** A store the service can use and later close (a MongoDB client or the embedded files). */
export interface DocumentStore {
  readonly kind: 'mongodb' | 'embedded';
  readonly db: StoreDb;
  /** Resolves when the store is reachable; throws otherwise (readiness). */
  ping(): Promise<void>;
  close(): Promise<void>;
}
