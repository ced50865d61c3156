/**
 * WebSockets per API key. Subscriptions were limited per socket and per key, but the sockets
 * themselves were not: one key could hold any number of authenticated WebSockets, each living
 * for the idle timeout (60 s) without a subscription, so a client opening sockets in a loop
 * held thousands at once on a router every other merchant's live screens share. A key now
 * holds at most `maxWebSocketsPerApiKey` (default: twice its subscription limit) on a router
 * process; the next `connection_init` is closed with 1008.
 * Stand-in subgraphs; nothing is opened upstream.
 */
import { createSecretsProvider } from '@ghostpay/platform';
import { afterAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { routerSubscriptionsConfigSchema, routerSubscriptionsSettings } from '../src/subscriptions/index.ts';
import { withRouter } from './router-harness.ts';
import { idleSubscriptions, until } from './subscriptions-harness.ts';

interface Connection {
  socket: WebSocket;
  /** 'ack', or the close that refused `connection_init`. */
  answer: Promise<'ack' | { code: number; reason: string }>;
  closed: Promise<void>;
}

/** A raw graphql-transport-ws socket that sends `connection_init` with `authorization`. */
function connect(wsUrl: string, authorization: string): Connection {
  const socket = new WebSocket(wsUrl, 'graphql-transport-ws');
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  const answer = new Promise<'ack' | { code: number; reason: string }>((resolve, reject) => {
    socket.once('open', () => socket.send(JSON.stringify({ type: 'connection_init', payload: { authorization } })));
    socket.on('message', (data) => {
      if ((JSON.parse(String(data)) as { type: string }).type === 'connection_ack') resolve('ack');
    });
    socket.once('close', (code, reason) => resolve({ code, reason: String(reason) }));
    socket.once('error', reject);
  });
  return { socket, answer, closed };
}

describe('WebSockets per API key', () => {
  const setup = withRouter({
    // No WebSocket limit given: twice the per-key subscription limit, 2.
    subscriptions: (issuer) => ({ ...idleSubscriptions(issuer), limits: { maxPerApiKey: 1 } }),
  });
  const open: Connection[] = [];
  afterAll(() => {
    for (const connection of open) connection.socket.terminate();
  });

  it('closes the connection_init past the limit with 1008, counts each key apart, and frees a place when a socket closes', async () => {
    const wsUrl = `${setup.router.url.replace(/^http/, 'ws')}/graphql`;
    // Two tokens of one key (the limit is the key's, not the token's), and another key.
    const first = await setup.issuer.bearer({ userId: 'usr_sockets', role: 'user', apiKeyId: 'key_sockets' });
    const second = await setup.issuer.bearer({ userId: 'usr_sockets', role: 'user', apiKeyId: 'key_sockets' });
    const other = await setup.issuer.bearer({ userId: 'usr_other', role: 'user', apiKeyId: 'key_other' });
    const opened = (authorization: string) => {
      const connection = connect(wsUrl, authorization);
      open.push(connection);
      return connection;
    };

    const a = opened(first);
    const b = opened(second);
    expect(await a.answer).toBe('ack');
    expect(await b.answer).toBe('ack');
    const refused = opened(first);
    expect(await refused.answer).toEqual({ code: 1008, reason: 'Too many WebSockets for this user (at most 2)' });
    await refused.closed;

    // Another key is not affected.
    expect(await opened(other).answer).toBe('ack');

    // A socket of the key closes: its place is free again.
    a.socket.close();
    await a.closed;
    await until(async () => (await opened(first).answer) === 'ack', 'a socket of the key to be accepted again');
    expect(await opened(second).answer).toEqual({ code: 1008, reason: 'Too many WebSockets for this user (at most 2)' });
  });

  it("counts a user's WebSockets together, whichever of their API keys each token came from", async () => {
    const wsUrl = `${setup.router.url.replace(/^http/, 'ws')}/graphql`;
    const ofKey = (apiKeyId: string) => setup.issuer.bearer({ userId: 'usr_many_keys', role: 'user', apiKeyId });
    const opened = (authorization: string) => {
      const connection = connect(wsUrl, authorization);
      open.push(connection);
      return connection;
    };
    expect(await opened(await ofKey('key_one')).answer).toBe('ack');
    expect(await opened(await ofKey('key_two')).answer).toBe('ack');
    // A third key of the same user (or one made after revoking the others) opens no third socket.
    expect(await opened(await ofKey('key_three')).answer).toEqual({ code: 1008, reason: 'Too many WebSockets for this user (at most 2)' });
  });

  it('is set by ROUTER_SUBSCRIPTION_MAX_WEBSOCKETS_PER_API_KEY (unset: the gateway default)', () => {
    const secrets = createSecretsProvider({ env: {} });
    try {
      const limitsOf = (env: Record<string, string>) =>
        routerSubscriptionsSettings(routerSubscriptionsConfigSchema.parse(env), {}, secrets)?.limits;
      expect(limitsOf({})).toHaveProperty('maxWebSocketsPerApiKey', undefined);
      expect(limitsOf({ ROUTER_SUBSCRIPTION_MAX_WEBSOCKETS_PER_API_KEY: '7' })?.maxWebSocketsPerApiKey).toBe(7);
      expect(() => routerSubscriptionsConfigSchema.parse({ ROUTER_SUBSCRIPTION_MAX_WEBSOCKETS_PER_API_KEY: '0' })).toThrow();
    } finally {
      secrets.close();
    }
  });
});
