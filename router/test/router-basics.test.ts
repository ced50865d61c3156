import { createJwtVerifier } from '@ghostpay/platform';
import { createTestTokenIssuer, rawHttpRequest, testAudience, testIssuer } from '@ghostpay/test-support';
import { describe, expect, it } from 'vitest';
import { codes, post, startRouter, startStubSubgraphs, withRouter } from './router-harness.ts';

describe('router over stand-in subgraphs', () => {
  const setup = withRouter();

  it('serves with at most MAX_CONNECTIONS open connections, 10000 unless set', async () => {
    expect(setup.router.server.maxConnections).toBe(10_000);
    const capped = await startRouter({ verifier: setup.issuer.verifier, urls: setup.subgraphs.urls, env: { MAX_CONNECTIONS: '250' } });
    try {
      expect(capped.server.maxConnections).toBe(250);
    } finally {
      await capped.close();
    }
  });

  it('resolves a query across subgraphs for an authorized caller', async () => {
    const auth = await setup.issuer.bearer({ userId: 'usr_1', role: 'merchant' });
    const response = await post(
      setup.router.graphqlUrl,
      { query: '{ me { id name } card(id: "card_1") { id last4 owner { id name } } }' },
      { authorization: auth },
    );
    expect(response.body.errors).toBeUndefined();
    expect(response.body.data).toEqual({
      me: { id: 'usr_1', name: 'Me' },
      card: { id: 'card_1', last4: '4242', owner: { id: 'usr_owner', name: 'User usr_owner' } },
    });
    // Card data (a revealed PAN included) is never kept by a browser or proxy cache.
    expect(response.headers.get('cache-control')).toBe('no-store');
  });

  it('forwards only Authorization, traceparent, tracestate, the request id and its own x-forwarded-for to subgraphs', async () => {
    const auth = await setup.issuer.bearer({ userId: 'usr_2', role: 'user' });
    const before = setup.subgraphs.headers.auth?.length ?? 0;
    const traceparent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    await post(
      setup.router.graphqlUrl,
      { query: '{ me { id } }' },
      {
        authorization: auth,
        traceparent,
        cookie: 'session=secret',
        'x-custom': 'nope',
        'x-request-id': 'req-123',
        'x-forwarded-for': '203.0.113.9',
      },
    );
    const seen = setup.subgraphs.headers.auth?.[before];
    // Not a trusted proxy: the client's own x-forwarded-for is replaced by its socket address.
    expect(seen?.['x-forwarded-for']).toBe('127.0.0.1');
    expect(seen?.authorization).toBe(auth);
    expect(seen?.traceparent).toBe(traceparent);
    expect(seen?.['x-request-id']).toBe('req-123');
    expect(seen?.cookie).toBeUndefined();
    expect(seen?.['x-custom']).toBeUndefined();
  });

  it('forwards the caller’s trace context only when it is well formed', async () => {
    const auth = await setup.issuer.bearer({ userId: 'usr_2', role: 'user' });
    const traceparent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    const forwarded = async (headers: Record<string, string>) => {
      const before = setup.subgraphs.headers.auth?.length ?? 0;
      await post(setup.router.graphqlUrl, { query: '{ me { id } }' }, { authorization: auth, ...headers });
      const seen = setup.subgraphs.headers.auth?.[before];
      return { traceparent: seen?.traceparent, tracestate: seen?.tracestate };
    };
    expect(await forwarded({ traceparent, tracestate: 'congo=t61rcWkgMzE' })).toEqual({ traceparent, tracestate: 'congo=t61rcWkgMzE' });
    // Two joined, upper-case hex, all-zero trace id: none reaches a subgraph, nor a tracestate beside it.
    for (const bad of [`${traceparent}, ${traceparent}`, traceparent.toUpperCase(), `00-${'0'.repeat(32)}-b7ad6b7169203331-01`]) {
      expect(await forwarded({ traceparent: bad, tracestate: 'congo=t61rcWkgMzE' }), bad).toEqual({
        traceparent: undefined,
        tracestate: undefined,
      });
    }
    // A tracestate past W3C's bounds (33 members) is dropped; the traceparent still goes.
    const members = Array.from({ length: 33 }, (_, i) => `v${i}=x`).join(',');
    expect(await forwarded({ traceparent, tracestate: members })).toEqual({ traceparent, tracestate: undefined });
  });

  it('refuses variables that do not coerce with BAD_USER_INPUT before any subgraph is called', async () => {
    const auth = await setup.issuer.bearer({ userId: 'usr_vars', role: 'merchant' });
    const hitsBefore = { ...setup.subgraphs.hits };
    const query = 'query Card($id: ID!) { card(id: $id) { id last4 } }';
    for (const variables of [{}, { id: null }, { id: { nested: true } }]) {
      const response = await post(setup.router.graphqlUrl, { query, variables }, { authorization: auth });
      expect(response.status, JSON.stringify(variables)).toBe(400);
      expect(codes(response), JSON.stringify(variables)).toEqual(['BAD_USER_INPUT']);
      expect(response.body.data, JSON.stringify(variables)).toBeUndefined();
    }
    expect(setup.subgraphs.hits).toEqual(hitsBefore);
  });

  it('answers a request target that is no URL with 400 BAD_USER_INPUT, not a 500', async () => {
    // Node's HTTP parser accepts `//[`; `new URL` throws on it.
    const raw = await rawHttpRequest(setup.router.graphqlUrl, 'GET //[ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    expect(raw).toMatch(/^HTTP\/1\.1 400/);
    expect(raw).toContain('"BAD_USER_INPUT"');
  });

  it('refuses an invalid token with 401 before anything else', async () => {
    const response = await post(setup.router.graphqlUrl, { query: '{ me { id } }' }, { authorization: 'Bearer a.b.c' });
    expect(response.status).toBe(401);
    expect(codes(response)).toEqual(['UNAUTHENTICATED']);
    expect(response.headers.get('cache-control')).toBe('no-store');
  });

  it('removes fields the caller may not select and still resolves the rest', async () => {
    const auth = await setup.issuer.bearer({ userId: 'usr_3', role: 'user' });
    // users needs the admin scope; card needs cards:read which a user has.
    const response = await post(
      setup.router.graphqlUrl,
      { query: '{ users { edges { node { id } } } card(id: "card_9") { id } }' },
      { authorization: auth },
    );
    expect(response.body.data).toEqual({ card: { id: 'card_9' } });
    expect(response.body.errors).toMatchObject([{ path: ['users'], extensions: { code: 'FORBIDDEN' } }]);
  });

  it('answers a token-free createToken and refuses token-free protected fields', async () => {
    const ok = await post(setup.router.graphqlUrl, { query: 'mutation { createToken(apiKey: "gp_x_y") { tokenType } }' });
    expect(ok.body.data).toEqual({ createToken: { tokenType: 'Bearer' } });
    const hitsBefore = setup.subgraphs.hits.auth;
    const refused = await post(setup.router.graphqlUrl, { query: '{ me { id } }' });
    expect(refused.status).toBe(401);
    expect(refused.body.data).toBeNull();
    expect(refused.body.errors).toMatchObject([{ path: ['me'], extensions: { code: 'UNAUTHENTICATED' } }]);
    expect(setup.subgraphs.hits.auth).toBe(hitsBefore);
  });

  it('keeps authorized siblings when a field is removed', async () => {
    // Without a token: user (nullable, @authenticated) is answered null; createToken still runs.
    const response = await post(setup.router.graphqlUrl, { query: 'query { user(id: "usr_5") { id } }' });
    expect(response.body.data).toBeNull();
    const withTypename = await post(setup.router.graphqlUrl, { query: '{ __typename user(id: "usr_5") { id } }' });
    expect(withTypename.body.data).toEqual({ __typename: 'Query', user: null });
    expect(codes(withTypename)).toEqual(['UNAUTHENTICATED']);
    const auth = `Bearer ${await setup.issuer.mint({ userId: 'usr_6', role: 'user', scopes: ['charges:read'] })}`;
    // A token without cards:read: the nullable user resolves, the card (non-null) is left out with FORBIDDEN.
    const mixed = await post(
      setup.router.graphqlUrl,
      { query: '{ user(id: "usr_5") { id } card(id: "c") { id } }' },
      { authorization: auth },
    );
    expect(mixed.body.data).toEqual({ user: { id: 'usr_5' } });
    expect(mixed.body.errors).toMatchObject([{ path: ['card'], extensions: { code: 'FORBIDDEN' } }]);
  });
});

describe('auth directives and @skip/@include through the router', () => {
  const setup = withRouter({ bearer: { userId: 'usr_skip', role: 'user' } });

  // users needs the admin scope, which a user token lacks.
  it('does not refuse a field the client skipped, even when it is the only root field', async () => {
    const only = await post(
      setup.router.graphqlUrl,
      { query: '{ users @include(if: false) { edges { node { id } } } }' },
      { authorization: setup.authorization },
    );
    expect(only.status).toBe(200);
    expect(only.body).toEqual({ data: {} });
    const query = 'query ($admin: Boolean!) { card(id: "card_s") { id } users @include(if: $admin) { edges { node { id } } } }';
    const skipped = await post(setup.router.graphqlUrl, { query, variables: { admin: false } }, { authorization: setup.authorization });
    expect(skipped.body).toEqual({ data: { card: { id: 'card_s' } } });
  });

  it('refuses the same field when the condition includes it', async () => {
    const only = await post(
      setup.router.graphqlUrl,
      { query: '{ users @include(if: true) { edges { node { id } } } }' },
      { authorization: setup.authorization },
    );
    expect(only.status).toBe(403);
    expect(codes(only)).toEqual(['FORBIDDEN']);
    const query =
      'query ($hide: Boolean = false) { card(id: "card_s") { id } ...Admin } fragment Admin on Query { users @skip(if: $hide) { edges { node { id } } } }';
    const included = await post(setup.router.graphqlUrl, { query }, { authorization: setup.authorization });
    expect(included.body.data).toEqual({ card: { id: 'card_s' } });
    expect(included.body.errors).toMatchObject([{ path: ['users'], extensions: { code: 'FORBIDDEN' } }]);
    const skipped = await post(setup.router.graphqlUrl, { query, variables: { hide: true } }, { authorization: setup.authorization });
    expect(skipped.body).toEqual({ data: { card: { id: 'card_s' } } });
  });
});

describe('router when the auth service’s keys cannot be fetched', () => {
  it('answers 503 SERVICE_UNAVAILABLE with Retry-After, not 401, for a token it cannot check', async () => {
    const issuer = await createTestTokenIssuer();
    const subgraphs = await startStubSubgraphs(issuer.verifier);
    // Port 9 (discard) on loopback: nothing listens, so every JWKS fetch is refused.
    const verifier = createJwtVerifier({ jwksUrl: 'http://127.0.0.1:9/.well-known/jwks.json', issuer: testIssuer, audience: testAudience });
    const router = await startRouter({ verifier, urls: subgraphs.urls });
    try {
      const response = await post(
        router.graphqlUrl,
        { query: '{ me { id } }' },
        { authorization: await issuer.bearer({ userId: 'usr_9', role: 'user' }) },
      );
      expect(response.status).toBe(503);
      expect(codes(response)).toEqual(['SERVICE_UNAVAILABLE']);
      expect(response.headers.get('retry-after')).toBe('5');
    } finally {
      await router.close();
      await subgraphs.close();
    }
  });
});
