import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createChargeMutation, type Harness, startHarness } from './charges-harness.ts';

describe('the charges service', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ MAX_CONNECTIONS: '250' });
  });
  afterAll(() => h?.close());

  it('holds at most MAX_CONNECTIONS open connections (subscription WebSockets included)', () => {
    expect(h.service.server.maxConnections).toBe(250);
  });

  it('tells every cache between it and the caller to keep nothing: cache-control no-store on charges, refusals and malformed requests', async () => {
    const merchant = await h.seed.user('merchant');
    const holder = await h.seed.user('user');
    const card = await h.seed.card({ ownerId: holder.id, issuerId: merchant.id });
    const bearer = await h.tokens.bearer({ userId: merchant.id, role: 'merchant' });
    const post = (body: string, authorization?: string) =>
      fetch(`${h.url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(authorization ? { authorization } : {}) },
        body,
      });
    const create = JSON.stringify({
      query: createChargeMutation,
      variables: { input: { cardId: card.id, amount: 125, currency: 'USD' }, key: 'no-store-1' },
    });
    const answers = {
      charged: await post(create, bearer),
      unauthenticated: await post(create),
      badToken: await post(create, 'Bearer a.b.c'),
      invalid: await post(JSON.stringify({ query: '{ nope }' }), bearer),
      notJson: await post('{"query": ', bearer),
      noRoute: await fetch(`${h.url}/charges`),
    };
    const charged = (await answers.charged.json()) as { data?: { createCharge: { status: string; amount: number } } };
    expect(charged.data?.createCharge).toMatchObject({ status: 'AUTHORIZED', amount: 125 });
    expect(Object.fromEntries(Object.entries(answers).map(([name, response]) => [name, response.status]))).toEqual({
      charged: 200,
      unauthenticated: 200,
      badToken: 401,
      invalid: 400,
      notJson: 400,
      noRoute: 404,
    });
    for (const [name, response] of Object.entries(answers)) expect(response.headers.get('cache-control'), name).toBe('no-store');
  });
});
