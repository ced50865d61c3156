import { randomBytes } from 'node:crypto';
import { freshDatabase, type TestDatabase } from '@ghostpay/test-support';
import pg from 'pg';
import { afterAll, beforeAll, expect, inject, it, vi } from 'vitest';
import { createDatabase } from '../src/index.ts';
import { startSilencingProxy } from './support/silencing-proxy.ts';

/**
 * Skipped, visibly, without the throwaway PostgreSQL cluster (PGlite has no LISTEN connection to lose); never in CI,
 * where the global setup fails the run when PostgreSQL is missing.
 */
const withoutPostgres = !inject('postgresAdminUrl');

let database: TestDatabase;

beforeAll(async () => {
  database = await freshDatabase({ poolSize: 1 });
});

afterAll(async () => {
  await database?.close();
});

/**
 * A channel listened to through a silencing proxy (heartbeat every `heartbeatMs`, 200 by
 * default): what it received, how often it reconnected, `notify` from a direct connection, and
 * `close` for all of it.
 */
async function listenThroughProxy(heartbeatMs = 200) {
  const proxy = await startSilencingProxy(new URL(database.url));
  const handle = await createDatabase({ url: proxy.url, poolSize: 1, listenHeartbeatMs: heartbeatMs });
  const admin = new pg.Client({ connectionString: database.url });
  await admin.connect();
  const channel = `beat_${randomBytes(4).toString('hex')}`;
  const state = { received: [] as string[], reconnects: 0 };
  const unlisten = await handle.listen(
    channel,
    (payload) => state.received.push(payload),
    () => state.reconnects++,
  );
  return Object.assign(state, {
    proxy,
    unlisten,
    notify: (payload: string) => admin.query('select pg_notify($1, $2)', [channel, payload]),
    async close() {
      await admin.end();
      await proxy.close();
      await handle.close();
    },
  });
}

it.skipIf(withoutPostgres)(
  'a LISTEN connection that goes silent is noticed by its heartbeat and replaced, and notifications flow again',
  async () => {
    const listening = await listenThroughProxy();
    try {
      await listening.notify('before');
      await vi.waitFor(() => expect(listening.received).toEqual(['before']), { timeout: 2_000 });

      listening.proxy.silence();
      await listening.notify('lost');
      // No error reaches the client; only the unanswered heartbeat tells it the connection is gone.
      await vi.waitFor(() => expect(listening.reconnects).toBe(1), { timeout: 5_000, interval: 50 });
      await listening.notify('after');
      await vi.waitFor(() => expect(listening.received).toEqual(['before', 'after']), { timeout: 2_000 });

      // A healthy connection is not replaced by its heartbeat.
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      expect(listening.reconnects).toBe(1);
      await listening.unlisten();
    } finally {
      await listening.close();
    }
  },
);

it.skipIf(withoutPostgres)(
  'a reconnect to a peer that never answers times out and is retried, and stop() does not wait on it',
  async () => {
    const listening = await listenThroughProxy();
    try {
      // The connection goes silent, and the first two reconnects reach a peer that never answers.
      listening.proxy.holdNext = 2;
      listening.proxy.silence();
      await vi.waitFor(() => expect(listening.reconnects).toBe(1), { timeout: 8_000, interval: 50 });
      expect(listening.proxy.holdNext).toBe(0);
      await listening.notify('after');
      await vi.waitFor(() => expect(listening.received).toEqual(['after']), { timeout: 2_000 });

      // Stopping once a reconnect has reached such a peer returns; the peer never answers and is
      // closed only in teardown, so a stop() that waited on it could not return.
      listening.proxy.holdNext = 1;
      listening.proxy.silence();
      await vi.waitFor(() => expect(listening.proxy.holdNext).toBe(0), { timeout: 8_000, interval: 5 });
      await listening.unlisten();
      expect(listening.reconnects).toBe(1);
    } finally {
      await listening.close();
    }
  },
);

it.skipIf(withoutPostgres)('stop() on a LISTEN connection that went silent returns without waiting for the peer', async () => {
  // A heartbeat that will not notice within the test: the connection is still current when stopped.
  const listening = await listenThroughProxy(600_000);
  try {
    listening.proxy.silence();
    // The peer answers nothing and the proxy closes nothing until teardown (after this returned):
    // ending the connection gracefully would wait for ever.
    await listening.unlisten();
    expect(listening.reconnects).toBe(0);
  } finally {
    await listening.close();
  }
});
