/**
 * Charges closes an upstream socket with 4403 "Token expired" when the router's service token it
 * was opened with expires: an expected event, once per token lifetime per socket. The pool
 * reconnects with a fresh token and resubscribes (the next event says events may have been
 * missed), logging it at info, not as a warning of a socket lost with active subscriptions.
 * A bare graphql-transport-ws peer stands in for charges (the end-to-end case, real charges:
 * upstream-token-expiry.test.ts).
 */
import type { AddressInfo } from 'node:net';
import { capturingLogger } from '@ghostpay/test-support';
import { afterEach, describe, expect, it } from 'vitest';
import { type WebSocket, WebSocketServer } from 'ws';
import { createUpstreamPool, type UpstreamPool } from '../src/subscriptions/upstream-pool.ts';
import { until } from './subscriptions-harness.ts';

/** Acks every connection, records its token, and answers each subscribe with one event. */
async function startUpstream() {
  const authorizations: unknown[] = [];
  const sockets: WebSocket[] = [];
  const server = new WebSocketServer({ port: 0, host: '127.0.0.1', handleProtocols: () => 'graphql-transport-ws' });
  server.on('connection', (socket) => {
    sockets.push(socket);
    socket.on('message', (raw) => {
      const message = JSON.parse(String(raw)) as { type: string; id?: string; payload?: { authorization?: unknown } };
      if (message.type === 'connection_init') {
        authorizations.push(message.payload?.authorization);
        socket.send(JSON.stringify({ type: 'connection_ack' }));
      } else if (message.type === 'ping') {
        socket.send(JSON.stringify({ type: 'pong' }));
      } else if (message.type === 'subscribe') {
        socket.send(
          JSON.stringify({ id: message.id, type: 'next', payload: { data: { chargeUpdated: { id: 'x', status: 'AUTHORIZED' } } } }),
        );
      }
    });
  });
  await new Promise<void>((resolve) => server.once('listening', () => resolve()));
  return {
    url: `ws://127.0.0.1:${(server.address() as AddressInfo).port}/graphql`,
    authorizations,
    sockets,
    async close() {
      for (const client of server.clients) client.terminate();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

describe('upstream pool when charges closes a socket at its token’s expiry', () => {
  let pool: UpstreamPool | undefined;
  let upstream: Awaited<ReturnType<typeof startUpstream>> | undefined;
  afterEach(async () => {
    await pool?.close();
    await upstream?.close();
  });

  it('reconnects with a fresh token, resubscribes every subscription, and logs it at info, not as a lost socket', async () => {
    upstream = await startUpstream();
    const { logger, parsed } = capturingLogger('router');
    let issued = 0;
    pool = createUpstreamPool({
      urls: { charges: upstream.url },
      authorization: () => `Bearer router-${++issued}`,
      logger,
      retryInitialDelayMs: 20,
    });
    const events: Record<string, boolean[]> = { a: [], b: [] };
    for (const id of ['a', 'b']) {
      pool.attach(
        {
          subgraph: 'charges',
          key: `charges:chargeUpdated:${id}`,
          query: 'subscription ($id: ID!) { chargeUpdated(id: $id) { id status } }',
          variables: { id },
        },
        { event: (missed) => events[id]?.push(missed), refused: () => {} },
      );
    }
    await until(() => events.a?.length === 1 && events.b?.length === 1, 'the first events');

    // What charges sends (subgraphs/charges/src/subscription-server.ts, tokenExpiredClose).
    upstream.sockets[0]?.close(4403, 'Token expired');
    await until(() => events.a?.length === 2 && events.b?.length === 2, 'the events after the reconnect');
    expect(upstream.authorizations).toEqual(['Bearer router-1', 'Bearer router-2']);
    expect(events).toEqual({ a: [false, true], b: [false, true] });
    expect(pool.stats()).toMatchObject({ sockets: 1, connectedSockets: 1, subscriptions: 2, retrying: 0 });

    const logs = parsed();
    expect(logs.filter((l) => l.msg === 'upstream token expired: reconnecting with a fresh one')).toMatchObject([
      { level: 30, code: 4403, subscriptions: 2 },
    ]);
    expect(logs.filter((l) => Number(l.level) >= 40)).toEqual([]);
  });
});
