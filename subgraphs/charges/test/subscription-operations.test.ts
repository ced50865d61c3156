/**
 * The charges subgraph's WebSocket serves `Subscription.chargeUpdated` (the router's upstream).
 * Its caller is authenticated once, at `connection_init` (the socket is closed when that token
 * expires: subscription-socket-limits.test.ts). graphql-ws
 * also executes queries and mutations sent over the same socket, with that same connection-time
 * principal: a socket opened with a token went on refunding charges after the token expired,
 * while POST /graphql refused it with UNAUTHENTICATED (such a socket is now also closed at its
 * token's expiry). Nothing uses queries or mutations over
 * this socket; they are refused with BAD_USER_INPUT, and its subscriptions go on until then.
 * Real PostgreSQL, real RS256 tokens.
 */
import { describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { type ChargeJson, createChargeMutation, refundChargeMutation, until, withChargesService } from './charges-harness.ts';

interface Message {
  id?: string;
  type: string;
  payload?: { data?: Record<string, unknown> | null; errors?: Array<{ message: string; extensions?: { code?: string } }> } & Array<{
    message: string;
    extensions?: { code?: string };
  }>;
}

describe('queries and mutations over the charges WebSocket', () => {
  const h = withChargesService();

  it('are refused with BAD_USER_INPUT, and the socket ends when its connection token expires', async () => {
    const card = await h.seed.card({ ownerId: h.holder.id, issuerId: h.merchant.id, amount: 1_000 });
    const created = await h.gql<{ createCharge: ChargeJson }>(
      createChargeMutation,
      { input: { cardId: card.id, amount: 1_000, currency: 'USD' }, key: 'ws-ops' },
      h.bearer,
    );
    const charge = created.data?.createCharge as ChargeJson;
    expect(charge.status).toBe('AUTHORIZED');

    // exp is whole seconds: this token expires two to three seconds from now.
    const shortLived = `Bearer ${await h.tokens.mint({ userId: h.merchant.id, role: 'merchant', expiresInSeconds: 3 })}`;
    const socket = new WebSocket(`${h.url.replace(/^http/, 'ws')}/graphql`, 'graphql-transport-ws');
    const messages: Message[] = [];
    const closes: { code: number; reason: string }[] = [];
    socket.on('message', (data) => messages.push(JSON.parse(String(data)) as Message));
    socket.on('close', (code, reason) => closes.push({ code, reason: String(reason) }));
    await new Promise((resolve, reject) => socket.once('open', resolve).once('error', reject));
    const send = (message: unknown) => socket.send(JSON.stringify(message));
    const answersTo = (id: string) => messages.filter((m) => m.id === id);
    try {
      send({ type: 'connection_init', payload: { authorization: shortLived } });
      await until(() => messages.some((m) => m.type === 'connection_ack'), 'the connection ack');
      send({
        id: 'watch',
        type: 'subscribe',
        payload: { query: 'subscription ($id: ID!) { chargeUpdated(id: $id) { status refundedAmount } }', variables: { id: charge.id } },
      });
      await until(() => answersTo('watch').length >= 1, 'the current status');

      // A refund and a read over the socket.
      send({
        id: 'refund',
        type: 'subscribe',
        payload: { query: refundChargeMutation, variables: { id: charge.id, amount: 100, key: 'ws-ops' } },
      });
      send({
        id: 'read',
        type: 'subscribe',
        payload: { query: 'query ($id: ID!) { charge(id: $id) { id status } }', variables: { id: charge.id } },
      });
      await until(() => answersTo('refund').length > 0 && answersTo('read').length > 0, 'both answers');
      const message = 'Only subscriptions are served over WebSocket; send queries and mutations to POST /graphql';
      for (const id of ['refund', 'read']) {
        expect(answersTo(id)).toEqual([{ id, type: 'error', payload: [{ message, extensions: { code: 'BAD_USER_INPUT' } }] }]);
      }
      // Nothing was refunded.
      const now = await h.gql<{ charge: ChargeJson }>(
        'query ($id: ID!) { charge(id: $id) { status refundedAmount } }',
        { id: charge.id },
        h.bearer,
      );
      expect(now.data?.charge).toEqual({ status: 'AUTHORIZED', refundedAmount: 0 });

      // The subscription went on while the token was good; the socket ends with the token.
      expect(answersTo('watch').map((m) => m.payload?.data?.chargeUpdated)).toEqual([{ status: 'AUTHORIZED', refundedAmount: 0 }]);
      await until(() => closes.length > 0, 'the socket to close at the token’s expiry');
      expect(closes).toEqual([{ code: 4403, reason: 'Token expired' }]);
    } finally {
      socket.close();
    }
    await h.expectLedgerClean();
  });
});
