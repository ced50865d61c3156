import type { AddressInfo } from 'node:net';
import { createLogger } from '@ghostpay/platform';
import { afterEach, describe, expect, it } from 'vitest';
import { type WebSocket, WebSocketServer } from 'ws';
import { createUpstreamPool, type UpstreamPool } from '../src/subscriptions/index.ts';
import { until } from './subscriptions-harness.ts';

interface Seen {
  connections: number;
  authorizations: unknown[];
  subscribes: { connection: number; id: string; variables: unknown }[];
  completes: number;
}

/** What the peer sends for one subscribe: an event, errors without data (then usually `complete`), an `error` message. */
type Answer = 'event' | 'complete' | { errors: string } | { error: string };

/**
 * A bare graphql-transport-ws peer: acks connection_init, records subscribes and answers
 * each with one `next` (as charges sends the current state first), or with what `answer`
 * returns for the n-th subscribe (from 1). `answerPings: false` makes it a peer that has
 * silently gone away.
 */
async function startUpstream(options: { answerPings: boolean; quietConnections?: number; answer?: (n: number) => Answer[] }) {
  const seen: Seen = { connections: 0, authorizations: [], subscribes: [], completes: 0 };
  const sockets = new Map<string, WebSocket>();
  const server = new WebSocketServer({ port: 0, host: '127.0.0.1', handleProtocols: () => 'graphql-transport-ws' });
  server.on('connection', (socket) => {
    const connection = ++seen.connections;
    socket.on('message', (raw) => {
      const message = JSON.parse(String(raw)) as { type: string; id?: string; payload?: { authorization?: unknown; variables?: unknown } };
      if (message.type === 'connection_init') {
        seen.authorizations.push(message.payload?.authorization);
        socket.send(JSON.stringify({ type: 'connection_ack' }));
      } else if (message.type === 'ping' && options.answerPings) {
        socket.send(JSON.stringify({ type: 'pong' }));
      } else if (message.type === 'subscribe' && message.id) {
        seen.subscribes.push({ connection, id: message.id, variables: message.payload?.variables });
        sockets.set(`${connection}:${message.id}`, socket);
        // A quiet connection accepts the subscription but has not sent anything yet when it drops.
        if (connection <= (options.quietConnections ?? 0)) return;
        for (const answer of options.answer?.(seen.subscribes.length) ?? ['event']) {
          const id = message.id;
          const failure = (code: string) => [{ message: 'upstream says no', extensions: { code } }];
          if (answer === 'event') {
            socket.send(JSON.stringify({ id, type: 'next', payload: { data: { chargeUpdated: { id: 'x', status: 'AUTHORIZED' } } } }));
          } else if (answer === 'complete') {
            socket.send(JSON.stringify({ id, type: 'complete' }));
          } else if ('errors' in answer) {
            // What graphql-ws sends when the subgraph's subscribe resolver throws.
            socket.send(JSON.stringify({ id, type: 'next', payload: { errors: failure(answer.errors) } }));
          } else {
            socket.send(JSON.stringify({ id, type: 'error', payload: failure(answer.error) }));
          }
        }
      } else if (message.type === 'complete') {
        seen.completes++;
      }
    });
  });
  await new Promise<void>((resolve) => server.once('listening', () => resolve()));
  const { port } = server.address() as AddressInfo;
  return {
    url: `ws://127.0.0.1:${port}/graphql`,
    seen,
    /** Client connections open now. */
    openConnections: () => server.clients.size,
    /** Drops every client connection without a close frame, as a killed process does. */
    dropAll() {
      for (const client of server.clients) client.terminate();
    },
    async close() {
      for (const client of server.clients) client.terminate();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

const logger = createLogger({ service: 'router-test', level: 'silent' });
const target = (id: string) => ({
  subgraph: 'charges',
  key: `charges:chargeUpdated:${id}`,
  query: 'subscription ($id: ID!) { chargeUpdated(id: $id) { id status } }',
  variables: { id },
});
const listener = () => {
  const events: boolean[] = [];
  const refusals: unknown[] = [];
  return { events, refusals, event: (missed: boolean) => events.push(missed), refused: (error: unknown) => refusals.push(error) };
};

describe('upstream pool', () => {
  let pool: UpstreamPool | undefined;
  let upstream: Awaited<ReturnType<typeof startUpstream>> | undefined;
  afterEach(async () => {
    await pool?.close();
    await upstream?.close();
  });

  it('opens one upstream subscription per key, at most `maxSubscriptionsPerSocket` per socket, with the router credential', async () => {
    upstream = await startUpstream({ answerPings: true });
    let exchanges = 0;
    pool = createUpstreamPool({
      urls: { charges: upstream.url },
      authorization: () => `Bearer router-${++exchanges}`,
      logger,
      maxSubscriptionsPerSocket: 2,
    });
    const a1 = listener();
    const a2 = listener();
    const b = listener();
    const c = listener();
    pool.attach(target('ch_a'), a1);
    const second = pool.attach(target('ch_a'), a2);
    pool.attach(target('ch_b'), b);
    pool.attach(target('ch_c'), c);
    await until(() => upstream?.seen.subscribes.length === 3, 'three upstream subscribes');
    expect(upstream.seen.connections).toBe(2);
    expect(upstream.seen.subscribes.map((s) => s.variables)).toEqual([{ id: 'ch_a' }, { id: 'ch_b' }, { id: 'ch_c' }]);
    expect(upstream.seen.authorizations).toEqual(['Bearer router-1', 'Bearer router-2']);
    await until(() => a1.events.length === 1 && c.events.length === 1, 'events');
    expect(a2.events).toEqual([false]);
    expect(pool.stats()).toMatchObject({ sockets: 2, subscriptions: 3 });

    // The upstream subscription outlives one of its two listeners, not both.
    second.detach();
    expect(pool.stats().subscriptions).toBe(3);
  });

  it('closes a socket whose pongs stopped, resubscribes, and flags the next event as possibly missed', async () => {
    upstream = await startUpstream({ answerPings: false });
    pool = createUpstreamPool({
      urls: { charges: upstream.url },
      authorization: () => 'Bearer router',
      logger,
      keepAliveMs: 100,
      retryInitialDelayMs: 20,
    });
    const watcher = listener();
    pool.attach(target('ch_a'), watcher);
    await until(() => watcher.events.length === 1, 'the first event');
    await until(() => (upstream?.seen.connections ?? 0) >= 2 && watcher.events.length >= 2, 'a reconnect and a new event', 5_000);
    expect(watcher.events.slice(0, 2)).toEqual([false, true]);
    expect(upstream.seen.subscribes.filter((s) => s.connection === 2)).toHaveLength(1);
  });

  it('keeps retrying with backoff while the upstream is down and resumes when it is back', async () => {
    upstream = await startUpstream({ answerPings: true });
    const url = upstream.url;
    await upstream.close();
    pool = createUpstreamPool({
      urls: { charges: url },
      authorization: () => 'Bearer router',
      logger,
      retryInitialDelayMs: 20,
      retryMaxDelayMs: 200,
    });
    const watcher = listener();
    pool.attach(target('ch_a'), watcher);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(watcher.events).toEqual([]);
    // Back on the same port.
    const port = Number(new URL(url).port);
    const again = new WebSocketServer({ port, host: '127.0.0.1', handleProtocols: () => 'graphql-transport-ws' });
    let subscribed = 0;
    again.on('connection', (socket) => {
      socket.on('message', (raw) => {
        const message = JSON.parse(String(raw)) as { type: string; id?: string };
        if (message.type === 'connection_init') socket.send(JSON.stringify({ type: 'connection_ack' }));
        if (message.type === 'subscribe') {
          subscribed++;
          socket.send(
            JSON.stringify({ id: message.id, type: 'next', payload: { data: { chargeUpdated: { id: 'x', status: 'SETTLED' } } } }),
          );
        }
      });
    });
    try {
      await until(() => watcher.events.length === 1, 'the event after the upstream came back', 5_000);
      expect(subscribed).toBe(1);
    } finally {
      await pool.close();
      pool = undefined;
      for (const client of again.clients) client.terminate();
      await new Promise<void>((resolve) => again.close(() => resolve()));
    }
  });
  it('flags the first event after a drop as possibly missed, even when the upstream had not sent anything before it', async () => {
    upstream = await startUpstream({ answerPings: true, quietConnections: 1 });
    pool = createUpstreamPool({
      urls: { charges: upstream.url },
      authorization: () => 'Bearer router',
      logger,
      retryInitialDelayMs: 20,
      retryMaxDelayMs: 100,
    });
    const seenBy = listener();
    pool.attach(target('ch_quiet'), seenBy);
    await until(() => upstream?.seen.subscribes.length === 1, 'the first subscribe');
    // The client already holds its subscribe-time state; whatever changed until the upstream is
    // back was not seen, so the next event must say so.
    upstream.dropAll();
    await until(() => seenBy.events.length === 1, 'the first event after the reconnect');
    expect(seenBy.events).toEqual([true]);
  });

  it('still closes an idle socket after a drop: a lost subscription does not keep its socket open forever', async () => {
    upstream = await startUpstream({ answerPings: true });
    pool = createUpstreamPool({
      urls: { charges: upstream.url },
      authorization: () => 'Bearer router',
      logger,
      retryInitialDelayMs: 20,
      retryMaxDelayMs: 100,
      lazyCloseTimeoutMs: 50,
    });
    const watcher = listener();
    const attachment = pool.attach(target('ch_drop'), watcher);
    await until(() => watcher.events.length === 1, 'the first event');
    upstream.dropAll();
    await until(() => watcher.events.length === 2, 'the event after the reconnect');
    expect(upstream.openConnections()).toBe(1);
    attachment.detach();
    await until(() => upstream?.openConnections() === 0, 'the idle socket to close', 3_000);
    expect(pool.stats()).toMatchObject({ connectedSockets: 0, subscriptions: 0 });
  });

  describe('when the upstream fails a subscription it accepted', () => {
    const start = async (answer: (n: number) => Answer[]) => {
      upstream = await startUpstream({ answerPings: true, answer });
      pool = createUpstreamPool({
        urls: { charges: upstream.url },
        authorization: () => 'Bearer router',
        logger,
        retryInitialDelayMs: 20,
        retryMaxDelayMs: 100,
      });
      return upstream;
    };

    it('treats errors without data (then complete) as a failure: resubscribes, and the next event says events may have been missed', async () => {
      const peer = await start((n) => (n <= 2 ? [{ errors: 'INTERNAL_SERVER_ERROR' }, 'complete'] : ['event']));
      const watcher = listener();
      pool?.attach(target('ch_failing'), watcher);
      await until(() => watcher.events.length === 1 || watcher.refusals.length > 0, 'an event after two failed subscribes');
      expect(watcher.events).toEqual([true]);
      expect(watcher.refusals).toEqual([]);
      expect(peer.seen.subscribes).toHaveLength(3);
      // One socket throughout: the subscription failed, not the connection.
      expect(peer.seen.connections).toBe(1);
      expect(pool?.stats()).toMatchObject({ subscriptions: 1, retrying: 0 });
    });

    it('treats a complete before any event, and an error message with another code, as failures too', async () => {
      const peer = await start((n) => (n === 1 ? ['complete'] : n === 2 ? [{ error: 'GRAPHQL_VALIDATION_FAILED' }] : ['event']));
      const watcher = listener();
      pool?.attach(target('ch_completed'), watcher);
      await until(() => watcher.events.length === 1 || watcher.refusals.length > 0, 'an event after the failed subscribes');
      expect(watcher.events).toEqual([true]);
      expect(watcher.refusals).toEqual([]);
      expect(peer.seen.subscribes).toHaveLength(3);
    });

    it('ends every listener on a refusal (NOT_FOUND as itself, a refused service account as SERVICE_UNAVAILABLE), and does not retry it', async () => {
      const peer = await start((n) => (n === 1 ? [{ errors: 'NOT_FOUND' }, 'complete'] : [{ error: 'FORBIDDEN' }]));
      const first = listener();
      const second = listener();
      pool?.attach(target('ch_gone'), first);
      pool?.attach(target('ch_gone'), second);
      await until(() => second.refusals.length > 0, 'the refusal');
      expect(first.refusals).toMatchObject([{ extensions: { code: 'NOT_FOUND' } }]);
      expect(second.refusals).toMatchObject([{ extensions: { code: 'NOT_FOUND' } }]);
      expect(first.events).toEqual([]);
      expect(pool?.stats()).toMatchObject({ subscriptions: 0, retrying: 0 });

      // A refusal by `error` message ends it the same way. FORBIDDEN refuses the router's own
      // account, not the client: the client is told the source is unavailable.
      const third = listener();
      pool?.attach(target('ch_forbidden'), third);
      await until(() => third.refusals.length > 0, 'the second refusal');
      expect(third.refusals).toEqual([{ message: 'The live event source is unavailable', extensions: { code: 'SERVICE_UNAVAILABLE' } }]);
      expect(peer.seen.subscribes).toHaveLength(2);
    });
  });
});
