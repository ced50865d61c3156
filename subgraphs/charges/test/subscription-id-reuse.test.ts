/**
 * graphql-transport-ws: a `subscribe` whose id the server still has a subscriber for closes the
 * socket with 4409 "Subscriber for <id> already exists". Here the first subscribe of an id is held
 * pending (its stream's first read waits for a table lock) when the id comes again: straight away,
 * and after the client `complete`d it. graphql-ws forgets an id on the client's `complete` at once,
 * before the pending subscribe has finished, so the reused id used to run two streams under one
 * id: the first event twice, and a `complete` for the id stopped only one of them (the other
 * held its listener until the socket closed). Real PostgreSQL, real RS256 tokens, a real socket.
 */
import { untilBlockedBy } from '@ghostpay/test-support';
import type pg from 'pg';
import { describe, expect, it } from 'vitest';
import { rawSocket, until, watchQuery, withChargesService } from './charges-harness.ts';

describe('a subscribe id reused while its first subscribe is pending', () => {
  const h = withChargesService();

  /** Runs `run` while another transaction holds charges.charge_events locked, then lets go. */
  const whileEventsLocked = async (run: (holder: pg.PoolClient, pool: pg.Pool) => Promise<void>) => {
    const pool = h.database.pool as pg.Pool;
    const holder = await pool.connect();
    try {
      await holder.query('begin');
      await holder.query('lock table charges.charge_events in access exclusive mode');
      await run(holder, pool);
    } finally {
      await holder.query('rollback').catch(() => undefined);
      holder.release();
    }
  };

  it('closes the socket with 4409 and leaves no subscription behind', async () => {
    const charge = await h.authorized('reuse-at-once');
    const client = await rawSocket(h.url);
    try {
      await client.init(h.bearer);
      await whileEventsLocked(async (holder, pool) => {
        client.watch('x', charge.id);
        await untilBlockedBy(pool, holder);
        client.watch('x', charge.id);
        await until(() => client.state.closed !== undefined, 'the close');
      });
      expect(client.state.closed).toEqual({ code: 4409, reason: 'Subscriber for x already exists' });
      // The pending subscribe, let go, finds its socket closed and ends its stream.
      await until(() => h.service.activeSubscriptions === 0, 'the pending stream to be released');
      expect(client.of('x')).toEqual([]);
    } finally {
      client.socket.close();
    }
  });

  // The second spelling escapes the type in JSON: what graphql-ws reads as a subscribe is one here too.
  it.each([
    ['subscribe', 'plain'],
    ['\\u0073ubscribe', 'escaped'],
  ])(
    'after a complete of the pending id, closes the socket with 4409 instead of running two streams under it (type %s)',
    async (type, key) => {
      const charge = await h.authorized(`reuse-after-complete-${key}`);
      const client = await rawSocket(h.url);
      try {
        await client.init(h.bearer);
        await whileEventsLocked(async (holder, pool) => {
          client.watch('y', charge.id);
          await untilBlockedBy(pool, holder);
          client.send({ id: 'y', type: 'complete' });
          const payload = JSON.stringify({ query: watchQuery, variables: { id: charge.id } });
          client.socket.send(`{"id":"y","type":"${type}","payload":${payload}}`);
          await until(() => client.state.closed !== undefined, 'the close');
        });
        // Closed before either subscribe's first read could answer: nothing was sent for the id.
        expect(client.state.closed).toEqual({ code: 4409, reason: 'Subscriber for y already exists' });
        expect(client.of('y')).toEqual([]);
        await until(() => h.service.activeSubscriptions === 0, 'every stream to be released');
      } finally {
        client.socket.close();
      }
    },
  );

  // The id is the client's: "Subscriber for <id> already exists" can pass the 123 bytes a close
  // reason may hold, and ws throws on a longer one (here inside the socket's message listener, an
  // uncaught exception in the service, and the socket left open with the duplicate unanswered).
  it.each([
    ['ascii', 'i'.repeat(200)],
    ['multi-byte', '\u00e9'.repeat(60)],
  ])('closes with 4409 and a reason that fits a close frame when the reused id is long (%s)', async (_kind, id) => {
    const charge = await h.authorized(`reuse-long-id-${_kind}`);
    const client = await rawSocket(h.url);
    try {
      await client.init(h.bearer);
      client.watch(id, charge.id);
      await until(() => client.statusesOf(id).length === 1, 'the current status');
      client.watch(id, charge.id);
      await until(() => client.state.closed !== undefined, 'the close');
      expect(client.state.closed?.code).toBe(4409);
      expect(Buffer.byteLength(client.state.closed?.reason ?? '')).toBeLessThanOrEqual(123);
      expect(client.state.closed?.reason).toMatch(/^Subscriber for .* already exists$/);
      await until(() => h.service.activeSubscriptions === 0, 'the stream to be released');
    } finally {
      client.socket.close();
    }
  });

  it('serves an id again once its earlier subscription has ended', async () => {
    const charge = await h.authorized('reuse-after-end');
    const client = await rawSocket(h.url);
    try {
      await client.init(h.bearer);
      client.watch('z', charge.id);
      await until(() => client.statusesOf('z').length === 1, 'the current status');
      client.send({ id: 'z', type: 'complete' });
      await until(() => h.service.activeSubscriptions === 0, 'the stream to be released');
      client.watch('z', charge.id);
      await until(() => client.statusesOf('z').length === 2, 'the current status again');
      expect(client.statusesOf('z')).toEqual(['AUTHORIZED', 'AUTHORIZED']);
      expect(h.service.activeSubscriptions).toBe(1);
      expect(client.state.closed).toBeUndefined();
    } finally {
      client.socket.close();
    }
  });
});
