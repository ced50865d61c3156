/**
 * What a direct subscriber of the charges WebSocket gets on later events, and how an argument
 * value the field refuses is answered.
 * - graphql-js's `subscribe` executes every event with the subscription's one context, built once
 *   at subscribe, whose DataLoaders cache what they read: a subscriber selecting a nested field
 *   read through a loader (`card { charges { status } }`) got the first event's value on every
 *   later event. Each event now gets its own loaders, as each HTTP request does.
 * - An explicit `null` for a nullable variable with a default used where the argument is non-null
 *   (`$id: ID = "x"` for `id: ID!`) passes validation and variable coercion, and failed only when
 *   graphql-js read the field's arguments: INTERNAL_SERVER_ERROR (logged as unexpected) instead of
 *   BAD_USER_INPUT; the socket's other subscriptions go on.
 * Real PostgreSQL, real RS256 tokens.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { type ChargeJson, createChargeMutation, refundChargeMutation, until, withChargesService } from './charges-harness.ts';

interface Message {
  id?: string;
  type: string;
  payload?: unknown;
}

describe('the charges WebSocket, per event', () => {
  const h = withChargesService();
  let socket: WebSocket;
  const messages: Message[] = [];
  const closes: number[] = [];
  const send = (message: unknown) => socket.send(JSON.stringify(message));
  const answersTo = (id: string) => messages.filter((m) => m.id === id);

  beforeAll(async () => {
    socket = new WebSocket(`${h.url.replace(/^http/, 'ws')}/graphql`, 'graphql-transport-ws');
    socket.on('message', (data) => messages.push(JSON.parse(String(data)) as Message));
    socket.on('close', (code) => closes.push(code));
    await new Promise((resolve, reject) => socket.once('open', resolve).once('error', reject));
    send({ type: 'connection_init', payload: { authorization: h.bearer } });
    await until(() => messages.some((m) => m.type === 'connection_ack'), 'the connection ack');
  });
  afterAll(() => {
    socket?.terminate();
  });

  const createCharge = async (key: string) => {
    const card = await h.seed.card({ ownerId: h.holder.id, issuerId: h.merchant.id, amount: 1_000 });
    const created = await h.gql<{ createCharge: ChargeJson }>(
      createChargeMutation,
      { input: { cardId: card.id, amount: 1_000, currency: 'USD' }, key },
      h.bearer,
    );
    const charge = created.data?.createCharge as ChargeJson;
    expect(charge.status).toBe('AUTHORIZED');
    return { card, charge };
  };

  it('resolves nested fields of each event afresh (loaders per event, not per subscription)', async () => {
    const { card, charge } = await createCharge('per-event-loaders');
    send({
      id: 'nested',
      type: 'subscribe',
      payload: {
        query: 'subscription ($id: ID!) { chargeUpdated(id: $id) { status card { id charges { id status refundedAmount } } } }',
        variables: { id: charge.id },
      },
    });
    await until(() => answersTo('nested').length >= 1, 'the current status');
    const first = answersTo('nested')[0]?.payload as { data: { chargeUpdated: unknown } };
    expect(first.data.chargeUpdated).toEqual({
      status: 'AUTHORIZED',
      card: { id: card.id, charges: [{ id: charge.id, status: 'AUTHORIZED', refundedAmount: 0 }] },
    });

    const refunded = await h.gql<{ refundCharge: ChargeJson }>(refundChargeMutation, { id: charge.id, key: 'per-event-refund' }, h.bearer);
    expect(refunded.data?.refundCharge.status).toBe('REFUNDED');
    await until(() => answersTo('nested').length >= 2, 'the refund event');
    const second = answersTo('nested')[1]?.payload as { data: { chargeUpdated: unknown }; errors?: unknown };
    expect(second.errors).toBeUndefined();
    // The nested charge is read again: the old code sent the first event's AUTHORIZED and 0 here.
    expect(second.data.chargeUpdated).toEqual({
      status: 'REFUNDED',
      card: { id: card.id, charges: [{ id: charge.id, status: 'REFUNDED', refundedAmount: 1_000 }] },
    });
    send({ id: 'nested', type: 'complete' });
  });

  it('refuses an explicit null for a defaulted variable in a non-null position with BAD_USER_INPUT, and the socket stays open', async () => {
    const { charge } = await createCharge('null-default');
    send({
      id: 'watch',
      type: 'subscribe',
      payload: { query: 'subscription ($id: ID!) { chargeUpdated(id: $id) { status } }', variables: { id: charge.id } },
    });
    await until(() => answersTo('watch').length >= 1, 'the other subscription');

    const query = 'subscription ($id: ID = "ch_default") { chargeUpdated(id: $id) { status } }';
    send({ id: 'null', type: 'subscribe', payload: { query, variables: { id: null } } });
    // Through a fragment at the root, too.
    send({
      id: 'null-fragment',
      type: 'subscribe',
      payload: {
        query: 'subscription ($id: ID = "ch_default") { ...Watch } fragment Watch on Subscription { chargeUpdated(id: $id) { status } }',
        variables: { id: null },
      },
    });
    await until(() => answersTo('null').length >= 1 && answersTo('null-fragment').length >= 1, 'the refusals');
    for (const id of ['null', 'null-fragment']) {
      const [answer] = answersTo(id);
      expect(answer?.type).toBe('error');
      const errors = (answer?.payload ?? []) as { message: string; extensions?: { code?: string } }[];
      expect(errors.map((e) => e.extensions?.code)).toEqual(['BAD_USER_INPUT']);
      expect(errors[0]?.message).toMatch(/"id".*must not be null/);
    }
    // Its default still applies when the variable is left out.
    send({ id: 'default', type: 'subscribe', payload: { query, variables: {} } });
    await until(() => answersTo('default').length >= 1, 'the default id answered');
    expect(JSON.stringify(answersTo('default')[0]?.payload)).toContain('NOT_FOUND');

    // The other subscription is still served.
    await h.gql(refundChargeMutation, { id: charge.id, key: 'null-default-refund' }, h.bearer);
    await until(() => answersTo('watch').length >= 2, 'the refund event on the other subscription');
    expect(closes).toEqual([]);
  });
});
