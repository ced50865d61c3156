import { describe, expect, it } from 'vitest';
import { post, withRouter } from './router-harness.ts';

/**
 * Response names are the client's: an alias may be any GraphQL name, `__proto__` and the
 * other names Object.prototype has included. The router must answer them like any other alias
 * and never let them reach a prototype shared by every request.
 */
describe('router answering aliases that Object.prototype also has', () => {
  const setup = withRouter();
  const prototypeNames = Object.getOwnPropertyNames(Object.prototype);

  it('answers a __proto__ alias as data and keeps answering other callers afterwards', async () => {
    const attacker = await setup.issuer.bearer({ userId: 'usr_mallory', role: 'user' });
    const first = await post(
      setup.router.graphqlUrl,
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
        setup.router.graphqlUrl,
        { query: 'query Mine { me { id name } }', operationName: 'Mine' },
        { authorization: await setup.issuer.bearer({ userId, role: 'user' }) },
      );
      expect(later.status).toBe(200);
      expect(later.body).toEqual({ data: { me: { id: userId, name: 'Me' } } });
    }
  });

  it('answers __proto__ aliases inside an entity fetch', async () => {
    const merchant = await setup.issuer.bearer({ userId: 'usr_m', role: 'merchant' });
    const response = await post(
      setup.router.graphqlUrl,
      { query: '{ card(id: "card_1") { __proto__: owner { evil: name } hasOwnProperty: owner { id } } }' },
      { authorization: merchant },
    );
    expect(response.status).toBe(200);
    expect(response.body.errors).toBeUndefined();
    expect(JSON.stringify(response.body.data)).toBe('{"card":{"__proto__":{"evil":"User usr_owner"},"hasOwnProperty":{"id":"usr_owner"}}}');
    expect(Object.getOwnPropertyNames(Object.prototype)).toEqual(prototypeNames);
  });

  it('answers a removed field aliased __proto__ with null, like any other removed field', async () => {
    const response = await post(setup.router.graphqlUrl, { query: '{ __typename __proto__: user(id: "usr_5") { id } }' });
    expect(JSON.stringify(response.body.data)).toBe('{"__typename":"Query","__proto__":null}');
    expect(response.body.errors).toMatchObject([{ path: ['__proto__'], extensions: { code: 'UNAUTHENTICATED' } }]);
  });
});
