import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MongoClient } from 'mongodb';
import type { DocumentStore } from '../src/index.ts';
import { connectMongoStore, openEmbeddedStore } from '../src/index.ts';

export interface Backend {
  name: 'embedded' | 'mongodb';
  /**
   * A fresh, empty store; `cleanup` closes it (or the last `restart` opened) and removes its data.
   * `restart` closes the store and opens a new one on the same data, as a process restart does.
   */
  open(): Promise<{ store: DocumentStore; cleanup(): Promise<void>; restart(): Promise<DocumentStore> }>;
}

const embedded: Backend = {
  name: 'embedded',
  async open() {
    const dir = mkdtempSync(join(tmpdir(), 'ghostpay-analytics-'));
    let store = await openEmbeddedStore({ dir });
    return {
      store,
      async cleanup() {
        await store.close();
        rmSync(dir, { recursive: true, force: true });
      },
      async restart() {
        await store.close();
        store = await openEmbeddedStore({ dir });
        return store;
      },
    };
  },
};

const mongodb = (url: string): Backend => ({
  name: 'mongodb',
  async open() {
    const database = `ghostpay_analytics_test_${randomBytes(6).toString('hex')}`;
    let store = await connectMongoStore({ url, database });
    return {
      store,
      async restart() {
        await store.close();
        store = await connectMongoStore({ url, database });
        return store;
      },
      async cleanup() {
        await store.close();
        const client = await MongoClient.connect(url);
        try {
          await client.db(database).dropDatabase();
        } finally {
          await client.close();
        }
      },
    };
  },
});

/** The embedded store always; MongoDB too when `MONGODB_URL` is set. The same suite runs on each. */
export const backends: Backend[] = process.env.MONGODB_URL ? [embedded, mongodb(process.env.MONGODB_URL)] : [embedded];
