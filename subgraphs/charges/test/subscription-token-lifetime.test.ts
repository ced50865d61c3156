/**
 * A socket's lifetime is its `connection_init` token's, however far away that token's expiry is.
 * A Node timer cannot wait longer than 2^31 - 1 ms (about 24.8 days): asked to, it fires after
 * 1 ms. A socket whose token expires in 30 days (a verifier that accepts tokens that old) must
 * stay open and serve its subscriptions, not be closed "Token expired" at once. Real PostgreSQL,
 * real RS256 tokens, a real verifier with a 60-day maximum token age.
 */
import { createJwtVerifier, createLogger } from '@ghostpay/platform';
import {
  createSeed,
  createTestTokenIssuer,
  freshDatabase,
  type TestDatabase,
  type TestTokenIssuer,
  testAudience,
  testIssuer,
} from '@ghostpay/test-support';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { type ChargesService, chargesConfigSchema, createChargesService, settleAllDue } from '../src/index.ts';
import { type ChargeJson, createChargeMutation, type GraphQLResult, until } from './charges-harness.ts';

const day = 86_400;

describe('a subscription socket whose token expires in more than 24.8 days', () => {
  let database: TestDatabase;
  let tokens: TestTokenIssuer;
  let service: ChargesService;
  let url: string;

  beforeAll(async () => {
    database = await freshDatabase({ poolSize: 5 });
    tokens = await createTestTokenIssuer();
    service = createChargesService({
      database,
      logger: createLogger({ service: 'charges', level: 'silent' }),
      verifier: createJwtVerifier({ jwks: tokens.jwks, issuer: testIssuer, audience: testAudience, maxTokenAgeSeconds: 60 * day }),
      config: chargesConfigSchema.parse({ LOG_LEVEL: 'silent', SETTLEMENT_ENABLED: 'false' }),
    });
    url = await service.start(0);
  });
  afterAll(async () => {
    await service?.close();
    await database?.close();
  });

  it('stays open and delivers its events (it was closed 4403 "Token expired" right after the ack)', async () => {
    const seed = createSeed(database.db);
    const merchant = await seed.user('merchant');
    const holder = await seed.user('user');
    const token = await tokens.mint({ userId: merchant.id, role: 'merchant', expiresInSeconds: 30 * day });
    const card = await seed.card({ ownerId: holder.id, issuerId: merchant.id, amount: 1_000 });
    const created = (await (
      await fetch(`${url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
        body: JSON.stringify({
          query: createChargeMutation,
          variables: { input: { cardId: card.id, amount: 1_000, currency: 'USD' }, key: 'far-expiry' },
        }),
      })
    ).json()) as GraphQLResult<{ createCharge: ChargeJson }>;
    const charge = created.data?.createCharge;
    if (!charge) throw new Error(JSON.stringify(created.errors));

    const socket = new WebSocket(`${url.replace(/^http/, 'ws')}/graphql`, 'graphql-transport-ws');
    const messages: Array<{ id?: string; type: string; payload?: unknown }> = [];
    let closed: { code: number; reason: string } | undefined;
    socket.on('message', (data) => messages.push(JSON.parse(String(data))));
    socket.on('close', (code, reason) => {
      closed = { code, reason: String(reason) };
    });
    await new Promise((resolve, reject) => socket.once('open', resolve).once('error', reject));
    const statuses = () =>
      messages
        .filter((m) => m.id === 'w' && m.type === 'next')
        .map((m) => (m.payload as { data?: { chargeUpdated?: { status: string } } }).data?.chargeUpdated?.status);
    try {
      socket.send(JSON.stringify({ type: 'connection_init', payload: { authorization: `Bearer ${token}` } }));
      await until(() => messages.some((m) => m.type === 'connection_ack') || closed !== undefined, 'the ack or the close');
      socket.send(
        JSON.stringify({
          id: 'w',
          type: 'subscribe',
          payload: { query: 'subscription ($id: ID!) { chargeUpdated(id: $id) { status } }', variables: { id: charge.id } },
        }),
      );
      await until(() => statuses().length === 1 || closed !== undefined, 'the current status or the close');
      expect(closed).toBeUndefined();
      await settleAllDue(database.db, { delayMs: 0, batchSize: 100 });
      await until(() => statuses().length === 2 || closed !== undefined, 'SETTLED or the close');
      expect(closed).toBeUndefined();
      expect(statuses()).toEqual(['AUTHORIZED', 'SETTLED']);
    } finally {
      socket.close();
    }
  });
});
