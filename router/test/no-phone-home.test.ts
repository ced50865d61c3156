import net from 'node:net';
import { createTestTokenIssuer } from '@ghostpay/test-support';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { post, type StubSubgraphs, startRouter, startStubSubgraphs } from './router-harness.ts';

const loopback = new Set(['127.0.0.1', '::1', 'localhost', '::ffff:127.0.0.1']);

/**
 * Records the host of every TCP connection this process starts (`net.Socket#connect`, which
 * http, https and fetch all go through). Loopback connections proceed as asked; any other is
 * recorded and then ended before it leaves the machine (a regression must not phone home from
 * the test run either). Unix-socket connections (a `path`) are not network traffic.
 */
function observeConnections() {
  const hosts: string[] = [];
  const connect = net.Socket.prototype.connect;
  net.Socket.prototype.connect = function (this: net.Socket, ...args: unknown[]) {
    const [first, second] = args;
    const options = (Array.isArray(first) ? first[0] : first) as { host?: string; path?: string } | number | string;
    let host: string | undefined;
    if (typeof options === 'object' && options !== null && !options.path) host = options.host ?? 'localhost';
    else if (typeof options === 'number') host = typeof second === 'string' ? second : 'localhost';
    if (host !== undefined) hosts.push(host);
    if (host !== undefined && !loopback.has(host)) {
      this.destroy(new Error(`no-phone-home test: connection to ${host} not made`));
      return this;
    }
    return (connect as (...a: unknown[]) => net.Socket).apply(this, args);
  } as typeof connect;
  return {
    nonLoopback: () => hosts.filter((host) => !loopback.has(host)),
    restore: () => {
      net.Socket.prototype.connect = connect;
    },
  };
}

describe('the router never phones home', () => {
  let subgraphs: StubSubgraphs | undefined;
  let router: Awaited<ReturnType<typeof startRouter>> | undefined;
  let observer: ReturnType<typeof observeConnections>;
  beforeAll(() => {
    observer = observeConnections();
  });
  afterAll(async () => {
    await router?.close();
    await subgraphs?.close();
    observer?.restore();
  });

  it('sees an outbound connection when one is made (the observer works)', async () => {
    // TEST-NET-1 (RFC 5737): an address nothing answers on; the attempt is what is recorded.
    const socket = net.connect({ host: '192.0.2.1', port: 9 });
    socket.on('error', () => {});
    expect(observer.nonLoopback()).toEqual(['192.0.2.1']);
  });

  it.each([
    ['unset', undefined],
    ['set to false', 'false'],
  ])(
    'starts no connection beyond loopback with APOLLO_TELEMETRY_DISABLED %s: no usage-data exporter, no cloud-metadata probes',
    async (_, value) => {
      const seenBefore = observer.nonLoopback().length;
      const before = process.env.APOLLO_TELEMETRY_DISABLED;
      if (value === undefined) delete process.env.APOLLO_TELEMETRY_DISABLED;
      else process.env.APOLLO_TELEMETRY_DISABLED = value;
      try {
        const issuer = await createTestTokenIssuer();
        subgraphs = await startStubSubgraphs(issuer.verifier);
        // @apollo/gateway starts its exporter when it is constructed, and the exporter's resource
        // detectors open their connections to the cloud metadata endpoints (169.254.169.254,
        // 100.100.100.200, metadata.google.internal) right then: by the time the router has
        // started and answered, any such connection has been started.
        router = await startRouter({ verifier: issuer.verifier, urls: subgraphs.urls });
        const answered = await post(router.graphqlUrl, { query: 'mutation { createToken(apiKey: "gp_a_b") { tokenType } }' });
        expect(answered.body).toEqual({ data: { createToken: { tokenType: 'Bearer' } } });
        expect(observer.nonLoopback().slice(seenBefore)).toEqual([]);
      } finally {
        await router?.close();
        await subgraphs?.close();
        router = undefined;
        subgraphs = undefined;
        if (before === undefined) delete process.env.APOLLO_TELEMETRY_DISABLED;
        else process.env.APOLLO_TELEMETRY_DISABLED = before;
      }
    },
  );
});
