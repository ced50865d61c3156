import { randomBytes } from 'node:crypto';
import { createServer, type Socket, connect as tcpConnect } from 'node:net';
import { freshDatabase, type TestDatabase } from '@ghostpay/test-support';
import pg from 'pg';
import { afterAll, beforeAll, expect, inject, it, vi } from 'vitest';
import { createDatabase } from '../src/index.ts';

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
 * A TCP proxy to PostgreSQL that, while `hold` is set, accepts new connections without
 * forwarding them yet: it freezes a client mid-connect so the test can act in between.
 */
async function startHoldingProxy(target: URL) {
  const sockets = new Set<Socket>();
  const held: { socket: Socket; forward: () => Socket }[] = [];
  let onHeld: (() => void) | undefined;
  const state = { hold: false };
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
    const forward = () => {
      const upstream = tcpConnect(Number(target.port), target.hostname);
      sockets.add(upstream);
      upstream.on('error', () => socket.destroy());
      socket.on('close', () => upstream.destroy());
      upstream.on('close', () => socket.destroy());
      socket.pipe(upstream).pipe(socket);
      return upstream;
    };
    if (state.hold) {
      held.push({ socket, forward });
      onHeld?.();
    } else {
      forward();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  const url = new URL(target);
  url.hostname = '127.0.0.1';
  url.port = String(port);
  return Object.assign(state, {
    url: url.href,
    /** The next connection held back. */
    nextHeld: () =>
      new Promise<(typeof held)[number]>((resolve) => {
        const take = () => {
          const first = held.shift();
          if (first) resolve(first);
          else onHeld = take;
        };
        take();
      }),
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  });
}

it.skipIf(withoutPostgres)('stop() during a LISTEN reconnect leaves no connection behind and no onReconnect call', async () => {
  const proxy = await startHoldingProxy(new URL(database.url));
  const handle = await createDatabase({ url: proxy.url, poolSize: 1 });
  const admin = new pg.Client({ connectionString: database.url });
  await admin.connect();
  const channel = `stop_${randomBytes(4).toString('hex')}`;
  const listeners = async () =>
    (
      await admin.query<{ pid: number }>('select pid from pg_stat_activity where application_name = $1 and datname = current_database()', [
        `ghostpay-listen-${channel}`,
      ])
    ).rows;
  try {
    let reconnects = 0;
    const unlisten = await handle.listen(
      channel,
      () => {},
      () => reconnects++,
    );
    const [listener] = await listeners();
    expect(listener).toBeDefined();

    // The listener loses its backend; its reconnect is frozen mid-connect by the proxy.
    proxy.hold = true;
    await admin.query('select pg_terminate_backend($1)', [listener?.pid]);
    const reconnect = await proxy.nextHeld();

    const stopping = unlisten();
    const upstream = reconnect.forward();
    await stopping;
    // The reconnect's connection reaches PostgreSQL only now; it must be closed, not kept.
    const closed = await new Promise<boolean>((resolve) => {
      if (upstream.destroyed) resolve(true);
      upstream.once('close', () => resolve(true));
      setTimeout(() => resolve(false), 3_000);
    });
    // A backend leaves pg_stat_activity a moment after its socket closes.
    await vi.waitFor(async () => expect(await listeners()).toEqual([]), { timeout: 2_000 });
    expect(reconnects).toBe(0);
    expect(closed).toBe(true);
  } finally {
    await admin.end();
    await proxy.close();
    await handle.close();
  }
});
