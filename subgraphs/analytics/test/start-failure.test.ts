import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger, createSecretsProvider } from '@ghostpay/platform';
import { createTestTokenIssuer } from '@ghostpay/test-support';
import { afterEach, describe, expect, it } from 'vitest';
import { analyticsConfigSchema, createAnalyticsService, type DocumentStore, openAnalyticsStore } from '../src/index.ts';

/**
 * A start that fails releases what the service holds (the store and its directory lock, the
 * recovery timer): its caller has nothing to close, and the data directory opens again at once.
 */
describe('analytics start that fails', () => {
  const cleanups: Array<() => unknown> = [];
  afterEach(async () => {
    for (let cleanup = cleanups.pop(); cleanup; cleanup = cleanups.pop()) await cleanup();
  });

  const setUp = async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'analytics-start-'));
    cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
    const config = analyticsConfigSchema.parse({ GHOSTPAY_DATA_DIR: dataDir, LOG_LEVEL: 'silent' });
    const secrets = createSecretsProvider({ env: {} });
    cleanups.push(() => secrets.close());
    const { verifier } = await createTestTokenIssuer();
    const build = (store: DocumentStore) =>
      createAnalyticsService({ store, secrets, verifier, config, logger: createLogger({ service: 'analytics', level: 'silent' }) });
    return { config, build };
  };

  const takenPort = async () => {
    const taken: Server = createServer();
    taken.listen(0, '127.0.0.1');
    await once(taken, 'listening');
    cleanups.push(() => new Promise((done) => taken.close(done)));
    return (taken.address() as { port: number }).port;
  };

  it('closes the store when its port is taken: the same data directory starts again at once', async () => {
    const { config, build } = await setUp();
    const port = await takenPort();
    const failed = build(await openAnalyticsStore(config));
    await expect(failed.start(port, '127.0.0.1')).rejects.toMatchObject({ code: 'EADDRINUSE' });
    // Still held, this open would be EmbeddedStoreInUseError naming this process.
    const again = build(await openAnalyticsStore(config));
    cleanups.push(() => again.close());
    await again.start(0, '127.0.0.1');
    expect((await fetch(`${again.url}/readyz`)).status).toBe(200);
    // Closing the failed service afterwards is harmless: its store is already closed.
    await expect(failed.close()).resolves.toBeUndefined();
  });

  it('closes the store when a step before listening fails (the store refuses to create its indexes)', async () => {
    const { config, build } = await setUp();
    const real = await openAnalyticsStore(config);
    const refused = new Error('not authorized to create indexes');
    // The real embedded store, answering createIndex as a MongoDB user without the right would.
    const refusing: DocumentStore = {
      kind: real.kind,
      writeBoundMs: real.writeBoundMs,
      ping: () => real.ping(),
      close: () => real.close(),
      db: {
        collection(name) {
          const collection = real.db.collection(name);
          return {
            bulkWrite: (operations, options) => collection.bulkWrite(operations, options),
            find: (filter) => collection.find(filter),
            createIndex: async () => {
              throw refused;
            },
          };
        },
      },
    };
    const failed = build(refusing);
    await expect(failed.start(0, '127.0.0.1')).rejects.toBe(refused);
    const reopened = await openAnalyticsStore(config);
    await reopened.close();
    await expect(failed.close()).resolves.toBeUndefined();
  });
});
