/**
 * An SSE client that stops reading. graphql-sse drains the subscription into its own unbounded
 * queue (every event, and a keep-alive every 12 s), and the gateway waited for each write to
 * flush: once the kernel's socket buffers were full, every later event piled up in that queue
 * for as long as the subscription lived, and when it ended (its token expired) the response
 * still waited for the client, holding its connection and everything queued until the peer went
 * away. Now what waits for the client is bounded (`sseMaxBufferedBytes`: the stream is dropped
 * and the subscription ends, its slot released), and an ended subscription's response gets
 * `sseEndTimeoutMs` to reach the client before its connection is dropped.
 *
 * The gateway behind a real HTTP server, a real HTTP client that pauses its socket, and a
 * stand-in upstream that reports an event on demand; each per-event read answers a different
 * 64 KiB charge, so megabytes reach the socket in a few dozen events.
 */
import { createServer, request as httpRequest, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { createTestTokenIssuer, type TestTokenIssuer } from '@ghostpay/test-support';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  apiSchemaFromSupergraph,
  createSubscriptionGateway,
  type SubscriptionGateway,
  type SubscriptionLimits,
} from '../src/subscriptions/index.ts';
import { composeRepoSupergraph } from './router-harness.ts';
import { silent, startEventUpstream, until, upstreamAuthorization } from './subscriptions-harness.ts';

const padding = 'x'.repeat(64 * 1024);

interface Served {
  gateway: SubscriptionGateway;
  url: string;
  /** Per-event reads answered so far (each a 64 KiB payload for the client). */
  reads(): number;
  /** The server side of each connection, and whether it has closed. */
  connections: { socket: Socket; closed: boolean }[];
  close(): Promise<void>;
}

describe('an SSE client that stops reading', () => {
  let issuer: TestTokenIssuer;
  let upstream: Awaited<ReturnType<typeof startEventUpstream>>;
  const schema = apiSchemaFromSupergraph(composeRepoSupergraph());
  const served: Served[] = [];

  beforeAll(async () => {
    issuer = await createTestTokenIssuer();
    upstream = await startEventUpstream();
  });
  afterEach(async () => {
    for (const s of served.splice(0)) await s.close();
  });
  afterAll(async () => {
    await upstream?.close();
  });

  /** The gateway at /graphql/stream of a plain HTTP server; every per-event read a new 64 KiB charge. */
  const serve = async (limits: SubscriptionLimits): Promise<Served> => {
    let reads = 0;
    const gateway = createSubscriptionGateway({
      verifier: issuer.verifier,
      schema,
      upstreams: { charges: upstream.url },
      upstreamAuthorization: upstreamAuthorization(issuer),
      executeQuery: async ({ variables }) => ({
        data: { chargeUpdated: { id: variables.id, status: 'AUTHORIZED', description: `${reads++}${padding}` } },
      }),
      logger: silent('router'),
      limits,
    });
    const connections: Served['connections'] = [];
    const server: Server = createServer((req: IncomingMessage, res) => {
      let text = '';
      req.setEncoding('utf8');
      req.on('data', (chunk: string) => {
        text += chunk;
      });
      req.on('end', () => void gateway.handleSse(req, res, JSON.parse(text)));
    });
    server.on('connection', (socket: Socket) => {
      const connection = { socket, closed: false };
      connections.push(connection);
      socket.once('close', () => {
        connection.closed = true;
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const s: Served = {
      gateway,
      reads: () => reads,
      url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/graphql/stream`,
      connections,
      async close() {
        await gateway.close();
        server.closeAllConnections();
        await new Promise<void>((resolve) => server.close(() => resolve()));
      },
    };
    served.push(s);
    return s;
  };

  /** Subscribes over SSE and stops reading once the first event arrived; `resume` reads on. */
  const subscribeAndStopReading = (url: string, authorization: string, chargeId: string) =>
    new Promise<{ resume(): Promise<{ received: string; complete: boolean }> }>((resolve, reject) => {
      const req = httpRequest(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'text/event-stream', authorization },
      });
      req.on('error', reject);
      req.on('response', (res) => {
        let received = '';
        res.setEncoding('utf8');
        const first = (text: string) => {
          received += text;
          if (!received.includes('event: next')) return;
          res.off('data', first);
          // Stops reading: Node stops taking bytes off the socket, the kernel's buffers fill.
          res.pause();
          resolve({
            resume: () =>
              new Promise((done) => {
                const finish = () => done({ received, complete: received.includes('event: complete') });
                res.on('data', (more: string) => {
                  received += more;
                });
                res.once('end', finish);
                res.once('close', finish);
                res.once('error', finish);
                res.resume();
              }),
          });
        };
        res.on('data', first);
      });
      req.end(
        JSON.stringify({
          query: 'subscription ($id: ID!) { chargeUpdated(id: $id) { id status description } }',
          variables: { id: chargeId },
        }),
      );
    });

  it('drops the stream, and ends the subscription, once more than sseMaxBufferedBytes wait for the client', {
    timeout: 60_000,
  }, async () => {
    const s = await serve({ sseMaxBufferedBytes: 512 * 1024 });
    const bearer = await issuer.bearer({ userId: 'usr_slow', role: 'user', apiKeyId: 'key_slow' });
    const client = await subscribeAndStopReading(s.url, bearer, 'ch_slow');
    expect(s.gateway.stats()).toMatchObject({ clientSubscriptions: 1, apiKeyReservations: 1 });
    await until(() => upstream.watching('ch_slow'), 'the upstream subscription');

    // Events keep coming; the token is good for an hour and the charge never reaches a final state.
    let events = 0;
    await until(
      () => {
        upstream.emit('ch_slow');
        events++;
        return s.gateway.stats().clientSubscriptions === 0;
      },
      () => `the subscription to end (${events} events sent)`,
      30_000,
    );
    expect(s.gateway.stats()).toMatchObject({ clientSubscriptions: 0, apiKeyReservations: 0 });
    await until(() => s.connections.every((c) => c.closed), 'the connection to be dropped');
    // The client reading on finds a stream that was cut, not completed.
    expect((await client.resume()).complete).toBe(false);
  });

  it("drops the connection when an ended subscription's response does not reach the client within sseEndTimeoutMs", {
    timeout: 60_000,
  }, async () => {
    const s = await serve({ sseMaxBufferedBytes: 512 * 1024 * 1024, sseEndTimeoutMs: 500 });
    // The token expires in 10 s: that ends the subscription (a last payload, then complete).
    const bearer = `Bearer ${await issuer.mint({ userId: 'usr_slow', role: 'user', apiKeyId: 'key_slow', expiresInSeconds: 10 })}`;
    const client = await subscribeAndStopReading(s.url, bearer, 'ch_slow_end');
    await until(() => upstream.watching('ch_slow_end'), 'the upstream subscription');
    const [connection] = s.connections;
    // 200 events of 64 KiB: 12.5 MiB, well past what the kernel's socket buffers take on loopback
    // (about 4.5 MiB here: tcp_wmem's 4 MiB maximum and the paused client's receive buffer).
    while (s.reads() <= 200 && s.gateway.stats().clientSubscriptions > 0) {
      upstream.emit('ch_slow_end');
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    expect(s.reads()).toBeGreaterThan(200);
    await until(() => s.gateway.stats().clientSubscriptions === 0, 'the token to expire', 10_000);
    // Ended: its response cannot reach a client that does not read, and its connection is dropped.
    await until(() => connection?.closed === true, 'the connection to be dropped', 5_000);
    expect((await client.resume()).complete).toBe(false);
  });
});
