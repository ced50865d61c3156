import { type AnyBulkWriteOperation, type Db, type Document, MongoClient, type MongoClientOptions } from 'mongodb';
import type { DocumentStore, StoreBulkResult, StoreCollection, StoreCursor, StoreDb } from './document-store.ts';

/**
 * Every stage of a MongoDB operation is bounded, so that a hung or unreachable mongod fails an
 * operation instead of stalling it, and a write is applied within `mongoWriteBoundMs` of being
 * sent or not at all (what the batch lease relies on: see `AnalyticsStoreOptions.batchLeaseMs`).
 *
 * Driver 7.9 (pinned) ignores `timeoutMS` (CSOT): since 7.8 it is deprecated and a no-op, and the
 * driver's release notes point to the per-stage options instead, which are what this sets.
 */
export interface MongoTimeouts {
  /** Choosing a server (`serverSelectionTimeoutMS`); also how long `connect` waits. @default 5000 */
  serverSelectionTimeoutMs: number;
  /** Opening a TCP/TLS connection and its handshake (`connectTimeoutMS`). @default 3000 */
  connectTimeoutMs: number;
  /** Waiting for a pooled connection (`waitQueueTimeoutMS`). @default 2000 */
  waitQueueTimeoutMs: number;
  /**
   * Server-side execution of each command (`maxTimeMS` on every write, read, index build and
   * ping): the server abandons an operation that has run this long. @default 5000
   */
  maxTimeMs: number;
  /**
   * How long the driver waits for an answer on a socket (`socketTimeoutMS`), then closes the
   * connection and fails the operation. Longer than `maxTimeMs`, so that the server's own
   * time-out answer arrives first. @default 10000
   */
  socketTimeoutMs: number;
}

export const defaultMongoTimeouts: Readonly<MongoTimeouts> = {
  serverSelectionTimeoutMs: 5_000,
  connectTimeoutMs: 3_000,
  waitQueueTimeoutMs: 2_000,
  maxTimeMs: 5_000,
  socketTimeoutMs: 10_000,
};

/**
 * The longest time from the moment the analytics code decides to send a write until that write
 * is applied or can no longer be: server selection, connection checkout and connect, then until
 * the driver gives up on the answer (socket time-out), plus the server's own execution bound for
 * a command received just before that. One attempt only: the client is built without retries
 * (`mongoClientOptions`), since a retry is a second send, later.
 */
export function mongoWriteBoundMs(t: MongoTimeouts): number {
  return t.serverSelectionTimeoutMs + t.waitQueueTimeoutMs + t.connectTimeoutMs + t.socketTimeoutMs + t.maxTimeMs;
}

/**
 * The driver's client options for `timeouts`. They override the same options in the connection
 * string (`?socketTimeoutMS=0` cannot unbind it). Writes are not retried by the driver
 * (`retryWrites: false`, `maxAdaptiveRetries: 0`): a failed write reaches the analytics code,
 * which leaves it to the emitter's retry and to recovery, as for any failed write.
 */
export function mongoClientOptions(timeouts: MongoTimeouts): MongoClientOptions {
  return {
    appName: 'ghostpay-analytics',
    serverSelectionTimeoutMS: timeouts.serverSelectionTimeoutMs,
    connectTimeoutMS: timeouts.connectTimeoutMs,
    waitQueueTimeoutMS: timeouts.waitQueueTimeoutMs,
    socketTimeoutMS: timeouts.socketTimeoutMs,
    retryWrites: false,
    maxAdaptiveRetries: 0,
  };
}

export interface MongoStoreOptions {
  url: string;
  /** Database name. @default `ghostpay_analytics` */
  database?: string;
  /** Per-stage bounds of every operation. @default defaultMongoTimeouts */
  timeouts?: Partial<MongoTimeouts>;
}

/**
 * The driver's `Db` as the `StoreDb` subset, with `maxTimeMS` on every command. Otherwise the
 * calls reach the driver as they are (the same `bulkWrite`/`find`/`createIndex`). The casts are
 * only for the type checker: the driver types filters and updates per schema (`UpdateFilter<TSchema>`
 * rejects `$inc: Record<string, number>` on an untyped `Document`), the subset types them loosely.
 */
function boundedDb(db: Db, maxTimeMS: number): StoreDb {
  return {
    collection(name: string): StoreCollection {
      const collection = db.collection(name);
      return {
        bulkWrite: (operations, options) =>
          collection.bulkWrite(operations as AnyBulkWriteOperation<Document>[], {
            ...options,
            maxTimeMS,
          }) as unknown as Promise<StoreBulkResult>,
        find: (filter) => collection.find(filter, { maxTimeMS }) as unknown as StoreCursor,
        createIndex: (keys, options) => collection.createIndex(keys, { ...options, maxTimeMS }),
      };
    },
  };
}

/** Connects the official `mongodb` driver, every operation bounded by `options.timeouts`. */
export async function connectMongoStore(options: MongoStoreOptions): Promise<DocumentStore> {
  const timeouts = { ...defaultMongoTimeouts, ...options.timeouts };
  const client = new MongoClient(options.url, mongoClientOptions(timeouts));
  await client.connect();
  const mongoDb = client.db(options.database ?? 'ghostpay_analytics');
  return {
    kind: 'mongodb',
    db: boundedDb(mongoDb, timeouts.maxTimeMs),
    writeBoundMs: mongoWriteBoundMs(timeouts),
    async ping() {
      await mongoDb.command({ ping: 1, maxTimeMS: timeouts.maxTimeMs });
    },
    async close() {
      await client.close();
    },
  };
}
