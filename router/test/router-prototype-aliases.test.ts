import { createTestTokenIssuer, type TestTokenIssuer } from '@ghostpay/test-support';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { post, type StubSubgraphs, startRouter, startStubSubgraphs } from './router-harness.ts';

/**
 * Response names are the client's: an alias may be any GraphQL name, `__proto__` and the
 * other names Object.prototype has included. The router must answer them like any other alias
 * and never let them reach a prototype shared by every request.
 */
describe('router answering aliases that Object.prototype also has', () => {
  let issuer: TestTokenIssuer;
  let subgraphs: StubSubgraphs;
  let router: Awaited<ReturnType<typeof startRouter>>;
  const prototypeNames = Object.getOwnPropertyNames(Object.prototype);

  beforeAll(async () => {
    issuer = await createTestTokenIssuer();
    subgraphs = await startStubSubgraphs(issuer.verifier);
    router = await startRouter({ verifier: issuer.verifier, urls: subgraphs.urls });
  });
  afterAll(async () => {
    await router?.close();
    await subgraphs?.close();
  });

  it('answers a __proto__ alias as data and keeps answering other callers afterwards', async () => {
    const attacker = await issuer.bearer({ userId: 'usr_mallory', role: 'user' });
    const first = await post(
      router.graphqlUrl,
      { query: '{ __proto__: me { operationName: name } constructor: me { id } toString: me { valueOf: id } }' },
      { authorization: attacker },
    );
    expect(first.status).toBe(200);
    expect(first.body.errors).toBeUndefined();
    // JSON.parse keeps "__proto__" as an own key: compare the text, not through an object literal.
    expect(JSON.stringify(first.body.data)).toBe(
      '{"__proto__":{"operationName":"Me"},"constructor":{"id":"usr_mallory"},"toString":{"valueOf":"usr_mallory"}}',
    );
    expect(Object.getOwnPropertyNames(Object.prototype)).toEqual(prototypeNames);

    for (const userId of ['usr_alice', 'usr_bob']) {
      const later = await post(
        router.graphqlUrl,
        { query: 'query Mine { me { id name } }', operationName: 'Mine' },
        { authorization: await issuer.bearer({ userId, role: 'user' }) },
      );
      expect(later.status).toBe(200);
      expect(later.body).toEqual({ data: { me: { id: userId, name: 'Me' } } });
    }
  });

  it('answers __proto__ aliases inside an entity fetch', async () => {
    const merchant = await issuer.bearer({ userId: 'usr_m', role: 'merchant' });
    const response = await post(
      router.graphqlUrl,
      { query: '{ card(id: "card_1") { __proto__: owner { evil: name } hasOwnProperty: owner { id } } }' },
      { authorization: merchant },
    );
    expect(response.status).toBe(200);
    expect(response.body.errors).toBeUndefined();
    expect(JSON.stringify(response.body.data)).toBe('{"card":{"__proto__":{"evil":"User usr_owner"},"hasOwnProperty":{"id":"usr_owner"}}}');
    expect(Object.getOwnPropertyNames(Object.prototype)).toEqual(prototypeNames);
  });

  it('answers a removed field aliased __proto__ with null, like any other removed field', async () => {
    const response = await post(router.graphqlUrl, { query: '{ __typename __proto__: user(id: "usr_5") { id } }' });
    expect(JSON.stringify(response.body.data)).toBe('{"__typename":"Query","__proto__":null}');
    expect(response.body.errors).toMatchObject([{ path: ['__proto__'], extensions: { code: 'UNAUTHENTICATED' } }]);
  });
});
