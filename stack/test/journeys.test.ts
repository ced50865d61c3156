import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger } from '@ghostpay/platform';
import { createClient } from 'graphql-ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { type Stack, startStack } from '../src/index.ts';

const dataDir = mkdtempSync(join(tmpdir(), 'ghostpay-stack-'));
const env = {
  ...process.env,
  DATABASE_URL: undefined,
  REDIS_URL: undefined,
  MONGODB_URL: undefined,
  SECRETS_DIR: undefined,
  SETTLEMENT_DELAY_MS: '300',
  SETTLEMENT_INTERVAL_MS: '100',
};
const start = () => startStack({ dataDir, env, randomPorts: true, logger: createLogger({ service: 'stack-test', level: 'silent' }) });
let stack: Stack;

beforeAll(async () => {
  stack = await start();
}, 120_000);
afterAll(async () => {
  await stack?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

async function rest(method: string, path: string, options: { body?: unknown; token?: string; idempotencyKey?: string } = {}) {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (options.token) headers.authorization = `Bearer ${options.token}`;
  if (options.idempotencyKey) headers['idempotency-key'] = options.idempotencyKey;
  const response = await fetch(`${stack.urls.bridge}${path}`, {
    method,
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

async function graphql(query: string, variables: Record<string, unknown> = {}, token?: string) {
  const response = await fetch(stack.urls.graphql, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify({ query, variables }),
  });
  // biome-ignore lint/suspicious/noExplicitAny: each test asserts the shape of the fields it reads
  type Data = Record<string, any>;
  return (await response.json()) as { data?: Data; errors?: Array<{ message: string; extensions?: { code?: string } }> };
}

async function restToken(role: 'admin' | 'merchant' | 'user') {
  const { status, body } = await rest('POST', '/auth/token', { body: { api_key: stack.credentials[role].apiKey } });
  expect(status).toBe(200);
  return String(body.access_token);
}

describe('npm start: the embedded stack', () => {
  it('writes the seeded credentials to dev-credentials.json', () => {
    const file = JSON.parse(readFileSync(join(dataDir, 'dev-credentials.json'), 'utf8'));
    for (const role of ['admin', 'merchant', 'user']) {
      expect(file[role]).toEqual({ userId: expect.stringMatching(/^usr_/), apiKey: expect.any(String) });
    }
    expect(stack.firstStart).toBe(true);
  });

  it('runs the REST journey: token, card, charge, a declined second charge, card status', async () => {
    const token = await restToken('merchant');
    const card = await rest('POST', '/cards', { token, body: { user_id: stack.credentials.user.userId, amount: 5000, currency: 'USD' } });
    expect(card.status).toBe(201);
    expect(card.body).toMatchObject({ card_id: expect.stringMatching(/^card_/), status: 'active', expires_at: expect.any(String) });

    const charge = await rest('POST', '/charges', {
      token,
      idempotencyKey: 'rest-journey-1',
      body: { card_id: card.body.card_id, amount: 4200, currency: 'USD' },
    });
    expect(charge.status).toBe(201);
    expect(charge.body).toMatchObject({ charge_id: expect.stringMatching(/^ch_/), status: 'authorized', amount: 4200 });

    const second = await rest('POST', '/charges', {
      token,
      idempotencyKey: 'rest-journey-2',
      body: { card_id: card.body.card_id, amount: 100, currency: 'USD' },
    });
    expect(second.status).toBe(402);
    expect(second.body).toMatchObject({ status: 'declined', decline_code: 'card_already_used' });

    const read = await rest('GET', `/cards/${card.body.card_id}`, { token });
    expect(read.status).toBe(200);
    expect(read.body).toMatchObject({ card_id: card.body.card_id, status: 'used' });
  });

  it('runs the GraphQL journey with fields from several subgraphs', async () => {
    const exchanged = await graphql('mutation ($key: String!) { createToken(apiKey: $key) { accessToken tokenType expiresIn } }', {
      key: stack.credentials.merchant.apiKey,
    });
    const token = exchanged.data?.createToken.accessToken as string;
    expect(exchanged.data?.createToken).toMatchObject({ tokenType: 'Bearer' });

    const issued = await graphql(
      'mutation ($input: IssueCardInput!) { issueCard(input: $input) { id status amount currency last4 } }',
      { input: { userId: stack.credentials.user.userId, amount: 2500, currency: 'EUR' } },
      token,
    );
    expect(issued.errors).toBeUndefined();
    const cardId = issued.data?.issueCard.id as string;

    const charge = (key: string, amount: number) =>
      graphql(
        'mutation ($input: CreateChargeInput!, $key: String!) { createCharge(input: $input, idempotencyKey: $key) { id status declineCode } }',
        { input: { cardId, amount, currency: 'EUR' }, key },
        token,
      );
    expect((await charge('gql-journey-1', 2500)).data?.createCharge).toMatchObject({ status: 'AUTHORIZED', declineCode: null });
    expect((await charge('gql-journey-2', 10)).data?.createCharge).toMatchObject({ status: 'DECLINED', declineCode: 'CARD_ALREADY_USED' });

    const read = await graphql('query ($id: ID!) { card(id: $id) { status owner { id name } charges { status } } }', { id: cardId }, token);
    expect(read.data?.card).toMatchObject({ status: 'USED', owner: { id: stack.credentials.user.userId } });
    const charges = (read.data?.card?.charges ?? []) as Array<{ status: string }>;
    expect(charges.map((c) => c.status).sort()).toEqual(['AUTHORIZED', 'DECLINED']);
  });

  it('delivers SETTLED to a subscriber through the router', async () => {
    const token = await restToken('merchant');
    const card = await rest('POST', '/cards', { token, body: { user_id: stack.credentials.user.userId, amount: 900, currency: 'USD' } });
    const charge = await rest('POST', '/charges', {
      token,
      idempotencyKey: 'subscription-journey',
      body: { card_id: card.body.card_id, amount: 900, currency: 'USD' },
    });
    const client = createClient({
      url: stack.urls.graphql.replace(/^http/, 'ws'),
      webSocketImpl: WebSocket,
      connectionParams: { authorization: `Bearer ${token}` },
      retryAttempts: 0,
    });
    try {
      const statuses: string[] = [];
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no SETTLED event; got ${statuses.join(', ')}`)), 15_000);
        client.subscribe<{ chargeUpdated: { id: string; status: string; card: { status: string } } }>(
          {
            query: 'subscription ($id: ID!) { chargeUpdated(id: $id) { id status card { status } } }',
            variables: { id: charge.body.charge_id },
          },
          {
            next: (message) => {
              if (message.errors) reject(new Error(JSON.stringify(message.errors)));
              const event = message.data?.chargeUpdated;
              if (!event) return;
              statuses.push(event.status);
              expect(event.card.status).toBe('USED');
              if (event.status === 'SETTLED') {
                clearTimeout(timer);
                resolve();
              }
            },
            error: (error) => reject(error instanceof Error ? error : new Error(JSON.stringify(error))),
            complete: () => {},
          },
        );
      });
      expect(statuses.at(-1)).toBe('SETTLED');
    } finally {
      await client.dispose();
    }
  });

  it('keeps cards, charges and credentials across a restart', async () => {
    const token = await restToken('merchant');
    const card = await rest('POST', '/cards', { token, body: { user_id: stack.credentials.user.userId, amount: 700, currency: 'GBP' } });
    const credentials = stack.credentials;
    await stack.close();
    stack = await start();
    expect(stack.firstStart).toBe(false);
    expect(stack.credentials).toEqual(credentials);
    const again = await restToken('merchant');
    const read = await rest('GET', `/cards/${card.body.card_id}`, { token: again });
    expect(read).toMatchObject({ status: 200, body: { card_id: card.body.card_id, status: 'active', amount: 700, currency: 'GBP' } });
  }, 120_000);
});
