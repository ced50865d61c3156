/**
 * The subset of the official `mongodb` driver's `Db`/`Collection` API the analytics code uses.
 * Written as an interface so the same analytics code runs on a real `mongodb` `Db` (which
 * satisfies it structurally, see `mongo-store.ts`) and on the embedded store
 * (`embedded-store.ts`), which implements exactly this subset and nothing more.
 *
 * Used operators: filters with implicit equality, `$eq`, `$ne`, `$gt`, `$gte`, `$lt`, `$lte`,
 * `$in`, `$nin`, `$exists`, `$or`, `$and`; updates with `$set`, `$setOnInsert`, `$inc`, `$max`,
 * `$unset`. An upsert whose filter does not match inserts a document with the filter's `_id`: when
 * a document with that `_id` exists (it failed the filter's other conditions), that operation
 * fails with a duplicate key error (code 11000), as in MongoDB.
 */
export type StoreDocument = Record<string, unknown>;
export type StoreFilter = Record<string, unknown>;

export interface StoreUpdate {
  $set?: StoreDocument;
  $setOnInsert?: StoreDocument;
  $inc?: Record<string, number>;
  $max?: StoreDocument;
  /** Field paths to remove (the value is ignored, as in MongoDB; `''` by convention). */
  $unset?: Record<string, ''>;
}

export type StoreBulkOperation =
  | { insertOne: { document: StoreDocument } }
  | { updateOne: { filter: StoreFilter; update: StoreUpdate; upsert?: boolean } }
  | { deleteOne: { filter: StoreFilter } };

export interface StoreBulkResult {
  insertedCount: number;
  matchedCount: number;
  modifiedCount: number;
  upsertedCount: number;
  deletedCount: number;
  /** Operation index → `_id` of the document that operation inserted by upsert. */
  upsertedIds: { [index: number]: unknown };
}

/**
 * One failed operation of a bulk write, as the driver's `WriteError` reports it: a bulk write with
 * failed operations rejects with an error carrying `writeErrors` (these) and `result` (what did
 * apply: the write is unordered, the other operations still ran).
 */
export interface StoreWriteError {
  /** Index of the operation in the bulk write. */
  readonly index: number;
  /** Server error code: 11000 for a duplicate key. */
  readonly code: number;
  readonly errmsg?: string;
}

export const duplicateKeyErrorCode = 11000;

/**
 * The failed operations a bulk write's error reports; empty when the error is not a write error
 * (a network or disk failure: what was applied is then unknown). The driver's
 * `MongoBulkWriteError.writeErrors` is typed as one error or a list: both are read.
 */
export function writeErrorsOf(error: unknown): StoreWriteError[] {
  const errors = (error as { writeErrors?: unknown } | null | undefined)?.writeErrors;
  if (errors === undefined || errors === null) return [];
  return (Array.isArray(errors) ? errors : [errors]) as StoreWriteError[];
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
  /**
   * Only on a store with a document limit (the embedded store; not part of the driver's `Db`):
   * throws, writing nothing, when storing documents with these `_id`s (per collection; those
   * already stored do not count) would take any collection past its limit. A check, not a
   * reservation: a write that races it can still fail on the limit.
   */
  checkRoom?(adds: Record<string, unknown[]>): void;
}

/** A store the service can use and later close (a MongoDB client or the embedded files). */
export interface DocumentStore {
  readonly kind: 'mongodb' | 'embedded';
  readonly db: StoreDb;
  /**
   * The longest time from sending a write until it is applied or no longer can be (a stalled or
   * unreachable store fails the write instead): the batch lease's margin must be longer
   * (`createAnalyticsStore` refuses otherwise).
   */
  readonly writeBoundMs: number;
  /** Resolves when the store is reachable; throws otherwise (readiness). */
  ping(): Promise<void>;
  close(): Promise<void>;
}
