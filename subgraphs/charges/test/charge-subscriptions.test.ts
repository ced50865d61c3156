import { createChargesService } from '@ghostpay/charges';
import { createDatabase, migrate } from '@ghostpay/db';
import { createLogger } from '@ghostpay/platform';
import { createSeed, createTestTokenIssuer } from '@ghostpay/test-support';
import { type Client, createClient, type SubscribePayload } from 'graphql-ws';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { chargesConfigSchema, settleAllDue } from '../src/index.ts';
import { type ChargeJson, createChargeMutation, refundChargeMutation, startHarness, until, withChargesService } from './charges-harness.ts';

interface Received {
  events: Array<{ id: string; status: string; refundedAmount: number; settledAt: string | null }>;
  errors: unknown[];
  completed: boolean;
}

/** Subscribes over graphql-ws and collects what arrives. */
function subscribe(client: Client, id: string): { received: Received; stop: () => void } {
  const received: Received = { events: [], errors: [], completed: false };
  const stop = client.subscribe<{ chargeUpdated: Received['events'][number] }>(
    { query: 'subscription ($id: ID!) { chargeUpdated(id: $id) { id status refundedAmount settledAt } }', variables: { id } },
    {
      next: (value) => {
        if (value.errors) received.errors.push(...value.errors);
        if (value.data) received.events.push(value.data.chargeUpdated);
      },
      error: (error) => received.errors.push(error),
      complete: () => {
        received.completed = true;
      },
    },
  );
  return { received, stop };
}

/** What one operation over graphql-ws ends with: its errors, whether sent as `error` or as a `next` with errors. */
function errorsOf(client: Client, payload: SubscribePayload): Promise<Array<{ message: string; extensions?: { code?: string } }>> {
  return new Promise((resolve, reject) => {
    const errors: Array<{ message: string; extensions?: { code?: string } }> = [];
    client.subscribe(payload, {
      next: (value) => errors.push(...((value.errors ?? []) as typeof errors)),
      error: (error) => (Array.isArray(error) ? resolve([...errors, ...error]) : reject(error)),
      complete: () => resolve(errors),
    });
  });
}

function wsClient(url: string, authorization: string | undefined, viaHeader = false): Client {
  return createClient({
    url: `${url.replace(/^http/, 'ws')}/graphql`,
    webSocketImpl: viaHeader
      ? class extends WebSocket {
          constructor(address: string, protocols?: string | string[]) {
            super(address, protocols, { headers: { authorization: authorization ?? '' } });
          }
        }
      : WebSocket,
    connectionParams: viaHeader ? undefined : { authorization },
    retryAttempts: 0,
    lazy: true,
  });
}

describe('chargeUpdated over graphql-ws (PostgreSQL LISTEN/NOTIFY)', () => {
  const h = withChargesService();
  const clients: Client[] = [];

  afterEach(async () => {
    await Promise.all(clients.splice(0).map((client) => client.dispose()));
    await h.expectLedgerClean();
  });

  it('delivers an event for each status change: AUTHORIZED → SETTLED → REFUNDED', async () => {
    const charge = await h.authorized('sub-1');
    const client = wsClient(h.url, h.bearer);
    clients.push(client);
    const { received } = subscribe(client, charge.id);
    await until(() => received.events.length >= 1, 'the current status');
    expect(received.events[0]).toMatchObject({ id: charge.id, status: 'AUTHORIZED' });

    await settleAllDue(h.database.db, { delayMs: 0, batchSize: 100 });
    await until(() => received.events.length >= 2, 'SETTLED');
    expect(received.events[1]).toMatchObject({ status: 'SETTLED' });
    expect(received.events[1]?.settledAt).toBeTruthy();

    const refunded = await h.gql(refundChargeMutation, { id: charge.id, amount: null, key: 'sub-refund' }, h.bearer);
    expect(refunded.errors).toBeUndefined();
    await until(() => received.events.length >= 3, 'REFUNDED');
    expect(received.events.map((e) => e.status)).toEqual(['AUTHORIZED', 'SETTLED', 'REFUNDED']);
    expect(received.events[2]?.refundedAmount).toBe(1_000);
    expect(received.errors).toEqual([]);
  });

  it('authenticates from the upgrade request Authorization header too, and lets the card holder watch', async () => {
    const charge = await h.authorized('sub-2');
    const client = wsClient(h.url, await h.tokens.bearer({ userId: h.holder.id, role: 'user' }), true);
    clients.push(client);
    const { received } = subscribe(client, charge.id);
    await until(() => received.events.length >= 1, 'the current status');
    await h.gql(refundChargeMutation, { id: charge.id, amount: 100, key: 'sub-2-refund' }, h.bearer);
    await until(() => received.events.length >= 2, 'PARTIALLY_REFUNDED');
    expect(received.events.map((e) => e.status)).toEqual(['AUTHORIZED', 'PARTIALLY_REFUNDED']);
  });

  it('answers NOT_FOUND to a subscriber who may not see the charge', async () => {
    const charge = await h.authorized('sub-3');
    const other = await h.seed.user('merchant');
    const client = wsClient(h.url, await h.tokens.bearer({ userId: other.id, role: 'merchant' }));
    clients.push(client);
    const { received } = subscribe(client, charge.id);
    await until(() => received.errors.length > 0, 'the error');
    expect(JSON.stringify(received.errors)).toContain('NOT_FOUND');
    expect(received.events).toEqual([]);
  });

  it('answers a document that does not validate, bad variables and a syntax error with their codes, and keeps the socket', async () => {
    const charge = await h.authorized('sub-errors');
    const client = wsClient(h.url, h.bearer);
    clients.push(client);
    const { received } = subscribe(client, charge.id);
    await until(() => received.events.length >= 1, 'the current status');
    const codes = async (payload: SubscribePayload) => (await errorsOf(client, payload)).map((error) => error.extensions?.code);

    expect(await codes({ query: 'subscription { chargeUpdated(id: "x") { nope } }' })).toEqual(['GRAPHQL_VALIDATION_FAILED']);
    const byId = 'subscription Watch($id: ID!) { chargeUpdated(id: $id) { id } }';
    expect(await codes({ query: byId })).toEqual(['BAD_USER_INPUT']);
    expect(await codes({ query: byId, variables: { id: { not: 'an id' } } })).toEqual(['BAD_USER_INPUT']);
    expect(await codes({ query: byId, variables: { id: charge.id }, operationName: 'Other' })).toEqual(['BAD_USER_INPUT']);
    const syntax = await errorsOf(client, { query: 'subscription { chargeUpdated(' });
    expect(syntax).toMatchObject([{ extensions: { code: 'GRAPHQL_PARSE_FAILED' } }]);
    expect(syntax[0]?.message).toMatch(/^Syntax Error/);
    // A caller's error is still NOT_FOUND, not a validation error.
    expect(await codes({ query: byId, variables: { id: 'ch_unknown' } })).toEqual(['NOT_FOUND']);

    // The socket and its first subscription lived through all of that.
    await settleAllDue(h.database.db, { delayMs: 0, batchSize: 100 });
    await until(() => received.events.length >= 2, 'SETTLED on the same socket');
    expect(received.errors).toEqual([]);
  });

  it('closes a connection without a valid token (4403)', async () => {
    const client = wsClient(h.url, 'Bearer not.a.token');
    clients.push(client);
    const { received } = subscribe(client, 'ch_x');
    await until(() => received.errors.length > 0, 'the close');
    expect((received.errors[0] as { code?: number }).code).toBe(4403);
  });

  it('stops a subscription on client unsubscribe and releases its bus listener', async () => {
    const charge = await h.authorized('sub-4');
    // A raw graphql-transport-ws socket, so what the server sends for a completed id is seen
    // (graphql-ws's client drops it on its side).
    const socket = new WebSocket(`${h.url.replace(/^http/, 'ws')}/graphql`, 'graphql-transport-ws');
    const messages: Array<{ id?: string; type: string; payload?: { data?: { chargeUpdated: { status: string } } } }> = [];
    socket.on('message', (data) => messages.push(JSON.parse(String(data))));
    await new Promise((resolve, reject) => socket.once('open', resolve).once('error', reject));
    const send = (message: unknown) => socket.send(JSON.stringify(message));
    const statusesOf = (id: string) =>
      messages.filter((m) => m.id === id && m.type === 'next').map((m) => m.payload?.data?.chargeUpdated.status);
    const watch = (id: string) =>
      send({
        id,
        type: 'subscribe',
        payload: { query: 'subscription ($id: ID!) { chargeUpdated(id: $id) { status } }', variables: { id: charge.id } },
      });
    try {
      send({ type: 'connection_init', payload: { authorization: h.bearer } });
      await until(() => messages.some((m) => m.type === 'connection_ack'), 'the connection ack');
      watch('a');
      await until(() => statusesOf('a').length >= 1, 'the current status');
      expect(h.service.activeSubscriptions).toBe(1);
      send({ id: 'a', type: 'complete' });
      await until(() => h.service.activeSubscriptions === 0, 'the listener to be released');

      // A marker: a second subscription to the same charge on the same socket, then the
      // settlement. Its stream is the only one listening (the count is 1), so once it has
      // SETTLED the settlement has been delivered to every subscriber it ever will be.
      watch('b');
      await until(() => statusesOf('b').length >= 1, "the marker's current status");
      expect(h.service.activeSubscriptions).toBe(1);
      await settleAllDue(h.database.db, { delayMs: 0, batchSize: 100 });
      await until(() => statusesOf('b').length >= 2, 'SETTLED on the marker');
      expect(statusesOf('b')).toEqual(['AUTHORIZED', 'SETTLED']);
      // The completed subscription got nothing after its first event, and nothing was sent for it.
      expect(statusesOf('a')).toEqual(['AUTHORIZED']);
      expect(messages.filter((m) => m.id === 'a').map((m) => m.type)).toEqual(['next']);
    } finally {
      socket.close();
    }
  });

  it('closes open subscriptions when the service shuts down', async () => {
    // A shutdown bound no test waits out: close() returns only because it closed the
    // subscription itself, not because the bound gave up on an open socket.
    const separate = await startHarness({ SHUTDOWN_TIMEOUT_MS: '3600000' });
    try {
      const m = await separate.seed.user('merchant');
      const u = await separate.seed.user('user');
      const mb = await separate.tokens.bearer({ userId: m.id, role: 'merchant' });
      const card = await separate.seed.card({ ownerId: u.id, issuerId: m.id });
      const created = await separate.gql<{ createCharge: ChargeJson }>(
        createChargeMutation,
        { input: { cardId: card.id, amount: 100, currency: 'USD' }, key: 'x' },
        mb,
      );
      const client = wsClient(separate.url, mb);
      const { received } = subscribe(client, created.data?.createCharge.id ?? '');
      await until(() => received.events.length >= 1, 'the current status');
      await separate.service.close();
      await until(() => received.errors.length > 0 || received.completed, 'the socket to close');
      await client.dispose();
    } finally {
      await separate.database.close();
    }
  });
});

describe('chargeUpdated on the embedded default (PGlite LISTEN)', () => {
  it('delivers AUTHORIZED then SETTLED from PGlite notifications', async () => {
    const database = await createDatabase();
    await migrate(database);
    const tokens = await createTestTokenIssuer();
    const config = chargesConfigSchema.parse({ LOG_LEVEL: 'silent', SETTLEMENT_DELAY_MS: '2000', SETTLEMENT_INTERVAL_MS: '100' });
    const service = createChargesService({
      database,
      logger: createLogger({ service: 'charges', level: 'silent' }),
      verifier: tokens.verifier,
      config,
    });
    const url = await service.start(0);
    const client = wsClient(url, undefined);
    try {
      const seed = createSeed(database.db);
      const merchant = await seed.user('merchant');
      const holder = await seed.user('user');
      const card = await seed.card({ ownerId: holder.id, issuerId: merchant.id });
      const bearer = await tokens.bearer({ userId: merchant.id, role: 'merchant' });
      const response = await fetch(`${url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: bearer },
        body: JSON.stringify({
          query: createChargeMutation,
          variables: { input: { cardId: card.id, amount: 100, currency: 'USD' }, key: 'pglite' },
        }),
      });
      const created = ((await response.json()) as { data: { createCharge: ChargeJson } }).data.createCharge;
      const authed = wsClient(url, bearer);
      try {
        const { received } = subscribe(authed, created.id);
        // The service's own worker settles it after 2 s; the subscription is open well before.
        await until(() => received.events.some((e) => e.status === 'SETTLED'), 'SETTLED from the embedded worker', 10_000);
        expect(received.events.map((e) => e.status)).toEqual(['AUTHORIZED', 'SETTLED']);
      } finally {
        await authed.dispose();
      }
    } finally {
      await client.dispose();
      await service.close();
      await database.close();
    }
    // PGlite (WASM) start-up and migration alone take seconds on a busy 2-core machine.
  }, 90_000);
});
