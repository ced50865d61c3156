import { createServer, type Socket, connect as tcpConnect } from 'node:net';

/**
 * A TCP proxy to PostgreSQL whose `silence()` stops forwarding on every connection open at that
 * moment without closing either side, as a NAT or load balancer does when it forgets a
 * connection, or a failover does to connections to a primary that vanished: nothing arrives, and
 * no error or reset either. Later connections pass normally, except the next `holdNext`, which
 * are accepted and never answered (a load balancer in front of a dead primary).
 */
export async function startSilencingProxy(target: URL) {
  const pairs: { client: Socket; upstream: Socket }[] = [];
  const silenced: Socket[] = [];
  const state = { holdNext: 0 };
  const server = createServer((client) => {
    client.on('error', () => {});
    if (state.holdNext > 0) {
      state.holdNext--;
      silenced.push(client);
      return;
    }
    const upstream = tcpConnect(Number(target.port), target.hostname);
    for (const socket of [client, upstream]) socket.on('error', () => {});
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
    client.pipe(upstream).pipe(client);
    pairs.push({ client, upstream });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = new URL(target);
  url.hostname = '127.0.0.1';
  url.port = String((server.address() as { port: number }).port);
  return Object.assign(state, {
    url: url.href,
    silence() {
      for (const { client, upstream } of pairs.splice(0)) {
        client.unpipe(upstream);
        upstream.unpipe(client);
        client.pause();
        upstream.pause();
        // Kept open, never forwarded: closed only by `close()`.
        silenced.push(client, upstream);
      }
    },
    async close() {
      for (const socket of [...silenced, ...pairs.flatMap((pair) => [pair.client, pair.upstream])]) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  });
}
