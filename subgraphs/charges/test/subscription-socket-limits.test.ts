/**
 * The charges WebSocket bounds what one socket holds, for direct clients as for the router:
 * - the socket lives no longer than its `connection_init` token: at the token's expiry it is
 *   closed with 4403 "Token expired" (it used to stay authorised for ever), and a token already
 *   expired is refused at `connection_init`, even within the verifier's clock tolerance;
 * - a peer that stops answering WebSocket pings is terminated (SUBSCRIPTION_KEEPALIVE_MS);
 * - a socket that never sends `connection_init` is closed with 4408 (SUBSCRIPTION_INIT_TIMEOUT_MS);
 * - a subscribe past SUBSCRIPTION_MAX_PER_SOCKET gets OPERATION_LIMIT_EXCEEDED, for that
 *   subscribe only.
 * Short intervals and a one-second token keep it fast. Real PostgreSQL, real RS256 tokens.
 */
import { untilBlockedBy } from '@ghostpay/test-support';
import type pg from 'pg';
import { describe, expect, it } from 'vitest';
import { settleAllDue } from '../src/index.ts';
import { rawSocket, until, withChargesService } from './charges-harness.ts';

describe('the charges WebSocket bounds each socket', () => {
  const h = withChargesService({ SUBSCRIPTION_KEEPALIVE_MS: '100', SUBSCRIPTION_INIT_TIMEOUT_MS: '300', SUBSCRIPTION_MAX_PER_SOCKET: '2' });

  it('closes a socket with 4403 "Token expired" when its token expires; a socket with a valid token goes on', async () => {
    const charge = await h.authorized('expiry');
    const lasting = await rawSocket(h.url);
    // exp is whole seconds: this token expires one to two seconds from now.
    const shortLived = await rawSocket(h.url);
    try {
      await lasting.init(h.bearer);
      lasting.watch('a', charge.id);
      await shortLived.init(`Bearer ${await h.tokens.mint({ userId: h.merchant.id, role: 'merchant', expiresInSeconds: 2 })}`);
      expect(shortLived.messages.map((m) => m.type)).toEqual(['connection_ack']);
      shortLived.watch('b', charge.id);
      await until(() => lasting.statusesOf('a').length === 1 && shortLived.statusesOf('b').length === 1, 'the current status on both');

      await until(() => shortLived.state.closed !== undefined, 'the expired socket to close');
      expect(shortLived.state.closed).toEqual({ code: 4403, reason: 'Token expired' });
      // Its subscription was released with it.
      await until(() => h.service.activeSubscriptions === 1, 'the expired socket’s subscription to be released');

      await settleAllDue(h.database.db, { delayMs: 0, batchSize: 100 });
      await until(() => lasting.statusesOf('a').length === 2, 'SETTLED on the lasting socket');
      expect(lasting.statusesOf('a')).toEqual(['AUTHORIZED', 'SETTLED']);
      expect(lasting.state.closed).toBeUndefined();
      expect(shortLived.statusesOf('b')).toEqual(['AUTHORIZED']);
    } finally {
      lasting.socket.close();
      shortLived.socket.close();
    }
  });

  it('refuses at connection_init a token already expired, even one the verifier still accepts (clock tolerance)', async () => {
    const expired = await h.tokens.mint({ userId: h.merchant.id, role: 'merchant', expiresInSeconds: -5 });
    // POST /graphql takes it: within the verifier's 30 s tolerance.
    const overHttp = await h.gql('query { charges(first: 1) { nodes { id } } }', {}, `Bearer ${expired}`);
    expect(overHttp.errors).toBeUndefined();
    const client = await rawSocket(h.url);
    try {
      await client.init(`Bearer ${expired}`);
      await until(() => client.state.closed !== undefined, 'the close');
      expect(client.state.closed?.code).toBe(4403);
      expect(client.messages).toEqual([]);
    } finally {
      client.socket.close();
    }
  });

  it('terminates a peer that stops answering pings, and keeps one that answers', async () => {
    const dead = await rawSocket(h.url, { autoPong: false });
    const alive = await rawSocket(h.url);
    try {
      await dead.init(h.bearer);
      await alive.init(h.bearer);
      await until(() => dead.state.closed !== undefined, 'the silent peer to be terminated');
      // Terminated, not closed with a handshake it could not answer.
      expect(dead.state.closed?.code).toBe(1006);
      const pingsThen = alive.state.pings;
      await until(() => alive.state.pings >= pingsThen + 3, 'three more pings to the live peer');
      expect(alive.state.closed).toBeUndefined();
    } finally {
      dead.socket.terminate();
      alive.socket.close();
    }
  });

  it('closes a socket that never sends connection_init (4408)', async () => {
    const client = await rawSocket(h.url);
    try {
      await until(() => client.state.closed !== undefined, 'the close');
      expect(client.state.closed).toEqual({ code: 4408, reason: 'Connection initialisation timeout' });
    } finally {
      client.socket.close();
    }
  });

  it('answers a subscribe past the per-socket cap with OPERATION_LIMIT_EXCEEDED; the others go on and a freed slot is reusable', async () => {
    const charge = await h.authorized('cap');
    const client = await rawSocket(h.url);
    try {
      await client.init(h.bearer);
      client.watch('1', charge.id);
      client.watch('2', charge.id);
      await until(() => client.statusesOf('1').length === 1 && client.statusesOf('2').length === 1, 'two subscriptions');
      client.watch('3', charge.id);
      await until(() => client.of('3').length > 0, 'the answer to the third');
      expect(client.of('3')).toEqual([
        {
          id: '3',
          type: 'error',
          payload: [
            {
              message: 'At most 2 subscriptions per socket; open another socket or end one first',
              extensions: { code: 'OPERATION_LIMIT_EXCEEDED' },
            },
          ],
        },
      ]);

      // Ending one frees its slot.
      client.send({ id: '1', type: 'complete' });
      client.watch('4', charge.id);
      await until(() => client.statusesOf('4').length === 1, 'the fourth subscription');
      await settleAllDue(h.database.db, { delayMs: 0, batchSize: 100 });
      await until(() => client.statusesOf('2').length === 2 && client.statusesOf('4').length === 2, 'SETTLED on both');
      expect(client.statusesOf('2')).toEqual(['AUTHORIZED', 'SETTLED']);
      expect(client.statusesOf('4')).toEqual(['AUTHORIZED', 'SETTLED']);
      expect(client.state.closed).toBeUndefined();
    } finally {
      client.socket.close();
    }
  });

  // graphql-ws forgets an id on `complete` at once, while its subscribe may still be pending; such
  // subscribes (their first read waiting here on a table lock) counted for nothing, so one socket
  // could pile up any number of them while the database was slow. They count, up to as many again.
  it('counts subscribes completed while still pending: past twice the cap of them, a subscribe gets OPERATION_LIMIT_EXCEEDED', async () => {
    const charge = await h.authorized('cap-pending');
    const client = await rawSocket(h.url);
    const pool = h.database.pool as pg.Pool;
    const holder = await pool.connect();
    try {
      await client.init(h.bearer);
      await holder.query('begin');
      await holder.query('lock table charges.charge_events in access exclusive mode');
      for (const id of ['p1', 'p2', 'p3', 'p4']) {
        client.watch(id, charge.id);
        client.send({ id, type: 'complete' });
      }
      await untilBlockedBy(pool, holder);
      client.watch('p5', charge.id);
      await until(() => client.of('p5').length > 0, 'the answer to the fifth');
      expect(client.of('p5')).toEqual([
        {
          id: 'p5',
          type: 'error',
          payload: [
            {
              message: 'At most 2 subscriptions per socket; open another socket or end one first',
              extensions: { code: 'OPERATION_LIMIT_EXCEEDED' },
            },
          ],
        },
      ]);
    } finally {
      await holder.query('rollback').catch(() => undefined);
      holder.release();
      client.socket.close();
    }
    await until(() => h.service.activeSubscriptions === 0, 'every stream to be released');
  });
});
