import { getIntrospectionQuery } from 'graphql';
import { beforeAll, describe, expect, it } from 'vitest';
import { sha256Hex } from '../src/persisted-queries.ts';
import { codes, type GraphQLResponse, post, type StubSubgraphs, withRouter, writeManifest } from './router-harness.ts';

/** The one operation of the manifests below. */
const trusted = 'query CardById($id: ID!) { card(id: $id) { id last4 } }';
const totalHits = (subgraphs: StubSubgraphs) => Object.values(subgraphs.hits).reduce((a, b) => a + b, 0);

describe('safety limits, refused before any subgraph is called', () => {
  const setup = withRouter({
    env: { ROUTER_RATE_LIMIT_PER_MINUTE: '1000' },
    bearer: { userId: 'usr_m', role: 'merchant', apiKeyId: 'key_limits' },
  });
  let admin: string;
  beforeAll(async () => {
    admin = await setup.issuer.bearer({ userId: 'usr_a', role: 'admin', apiKeyId: 'key_admin' });
  });

  const aliases = (n: number) => Array.from({ length: n }, (_, i) => `a${i}: id`).join(' ');
  const refusals: [string, () => unknown, number, string, RegExp][] = [
    [
      'an operation deeper than 10',
      () => ({ query: '{ card(id: "1") { owner { cards { edges { node { owner { cards { edges { node { owner { id } } } } } } } } } } }' }),
      400,
      'OPERATION_LIMIT_EXCEEDED',
      /depth 11 exceeds the limit of 10/,
    ],
    ['more than 15 aliases', () => ({ query: `{ card(id: "1") { ${aliases(16)} } }` }), 400, 'OPERATION_LIMIT_EXCEEDED', /aliases 16/],
    [
      'more than 10 root fields',
      () => ({ query: `{ ${Array.from({ length: 11 }, (_, i) => `c${i}: card(id: "${i}") { id }`).join(' ')} }` }),
      400,
      'OPERATION_LIMIT_EXCEEDED',
      /root fields 11/,
    ],
    ['more than 2000 tokens', () => ({ query: `{ card(id: "1") { ${'id '.repeat(2100)} } }` }), 400, 'OPERATION_LIMIT_EXCEEDED', /tokens/],
    [
      'a cost above 5000',
      () => ({ query: '{ cards(first: 100) { edges { node { owner { cards(first: 100) { edges { node { id } } } } } } } }' }),
      400,
      'OPERATION_LIMIT_EXCEEDED',
      /cost \d+ exceeds the limit of 5000/,
    ],
    [
      "a cost above 5000 through a variable's default value",
      () => ({
        query: 'query ($n: Int = 100) { cards(first: $n) { edges { node { owner { cards(first: $n) { edges { node { id } } } } } } } }',
      }),
      400,
      'OPERATION_LIMIT_EXCEEDED',
      /cost 20402 exceeds the limit of 5000/,
    ],
    [
      // Measuring it spread by spread took time exponential in the fragments (this one: 2^40 spreads) before any limit was compared.
      'fragments that spread the next one twice, 40 deep',
      () => ({
        query: `query Q { ...F0 }\n${Array.from({ length: 40 }, (_, i) => `fragment F${i} on Query { ...F${i + 1} ...F${i + 1} }`).join('\n')}\nfragment F40 on Query { __typename }`,
      }),
      400,
      'OPERATION_LIMIT_EXCEEDED',
      /cost 1099511627776 exceeds the limit of 5000/,
    ],
    [
      'a batched request (batching is off)',
      () => [{ query: '{ card(id: "1") { id } }' }, { query: '{ card(id: "2") { id } }' }],
      400,
      'OPERATION_LIMIT_EXCEEDED',
      /Batched requests are disabled/,
    ],
    [
      'a body over the size limit',
      () => ({ query: '{ card(id: "1") { id } }', variables: { pad: 'x'.repeat(300 * 1024) } }),
      413,
      'PAYLOAD_TOO_LARGE',
      /exceeds/,
    ],
    [
      'introspection from a non-admin token',
      () => ({ query: '{ __schema { queryType { name } } }' }),
      403,
      'FORBIDDEN',
      /admin tokens only/,
    ],
  ];

  for (const [what, body, status, code, message] of refusals) {
    it(`refuses ${what} without calling a subgraph`, async () => {
      const before = totalHits(setup.subgraphs);
      const response = await post(setup.router.graphqlUrl, body(), { authorization: setup.authorization });
      expect(response.status).toBe(status);
      expect(codes(response)).toEqual([code]);
      expect(response.body.errors?.[0]?.message).toMatch(message);
      expect(totalHits(setup.subgraphs)).toBe(before);
    });
  }

  it('lets admins introspect', async () => {
    const response = await post(setup.router.graphqlUrl, { query: '{ __schema { queryType { name } } }' }, { authorization: admin });
    expect(response.body).toEqual({ data: { __schema: { queryType: { name: 'Query' } } } });
  });

  // What GraphiQL (the playground's docs and completion), codegen and rover send: 15 deep through
  // `ofType`, past the depth limit of 10 were introspection measured like data.
  const standardIntrospection = getIntrospectionQuery({
    descriptions: true,
    specifiedByUrl: true,
    directiveIsRepeatable: true,
    schemaDescription: true,
    inputValueDeprecation: true,
  });

  it('answers admins the standard introspection query every client sends, and refuses it to others', async () => {
    const forAdmin = await post(
      setup.router.graphqlUrl,
      { query: standardIntrospection, operationName: 'IntrospectionQuery' },
      { authorization: admin },
    );
    expect(forAdmin.body.errors).toBeUndefined();
    expect(forAdmin.status).toBe(200);
    const types = (forAdmin.body.data as { __schema: { types: { name: string }[] } }).__schema.types.map((t) => t.name);
    expect(types).toEqual(expect.arrayContaining(['Query', 'Mutation', 'Card', 'Charge']));
    const before = totalHits(setup.subgraphs);
    const forMerchant = await post(setup.router.graphqlUrl, { query: standardIntrospection }, { authorization: setup.authorization });
    expect(forMerchant.status).toBe(403);
    expect(codes(forMerchant)).toEqual(['FORBIDDEN']);
    expect(totalHits(setup.subgraphs)).toBe(before);
  });

  it('refuses, even to admins, introspection that fans out over the schema at every level', async () => {
    // types × fields × fields × …: graphql-js's MaxIntrospectionDepthRule (lists nested 3 deep), which
    // the operation limits rely on since they do not measure inside introspection.
    const query = '{ __schema { types { fields { type { fields { type { fields { type { fields { name } } } } } } } } } }';
    const response = await post(setup.router.graphqlUrl, { query }, { authorization: admin });
    expect(response.status).toBe(400);
    expect(response.body.data).toBeUndefined();
    expect(response.body.errors?.[0]?.message).toBe('Maximum introspection depth exceeded');
  });

  it('gives "did you mean" suggestions to admins only', async () => {
    const query = { query: '{ crd(id: "1") { id } }' };
    const forMerchant = await post(setup.router.graphqlUrl, query, { authorization: setup.authorization });
    expect(forMerchant.body.errors?.[0]?.message).toBe('Cannot query field "crd" on type "Query".');
    const forAdmin = await post(setup.router.graphqlUrl, query, { authorization: admin });
    expect(forAdmin.body.errors?.[0]?.message).toMatch(/Did you mean "card"/);
  });

  it('prevents CSRF: a simple GET without a preflight header is refused', async () => {
    const before = totalHits(setup.subgraphs);
    const response = await fetch(`${setup.router.graphqlUrl}?query=${encodeURIComponent('{ card(id: "1") { id } }')}`, {
      headers: { authorization: setup.authorization },
    });
    expect(response.status).toBe(400);
    expect(await response.text()).toMatch(/CSRF/);
    expect(totalHits(setup.subgraphs)).toBe(before);
  });

  it('supports automatic persisted queries (hash first, then hash with query, then hash alone)', async () => {
    const query = '{ card(id: "apq") { id } }';
    const extensions = { persistedQuery: { version: 1, sha256Hash: sha256Hex(query) } };
    const miss = await post(setup.router.graphqlUrl, { extensions }, { authorization: setup.authorization });
    expect(codes(miss)).toEqual(['PERSISTED_QUERY_NOT_FOUND']);
    const register = await post(setup.router.graphqlUrl, { query, extensions }, { authorization: setup.authorization });
    expect(register.body.data).toEqual({ card: { id: 'apq' } });
    const hit = await post(setup.router.graphqlUrl, { extensions }, { authorization: setup.authorization });
    expect(hit.body.data).toEqual({ card: { id: 'apq' } });
  });
});

describe('safelist mode', () => {
  const setup = withRouter({
    env: { ROUTER_PERSISTED_QUERIES: 'safelist', ROUTER_PQ_MANIFESTS: writeManifest([{ name: 'CardById', type: 'query', body: trusted }]) },
    bearer: { userId: 'usr_m', role: 'merchant', apiKeyId: 'key_safelist' },
  });

  it('runs a manifest operation named by its id', async () => {
    const response = await post(
      setup.router.graphqlUrl,
      {
        operationName: 'CardById',
        variables: { id: 'card_7' },
        extensions: { persistedQuery: { version: 1, sha256Hash: sha256Hex(trusted) } },
      },
      { authorization: setup.authorization },
    );
    expect(response.body).toEqual({ data: { card: { id: 'card_7', last4: '4242' } } });
  });

  it('runs a manifest operation named by id over GET', async () => {
    const params = new URLSearchParams({
      operationName: 'CardById',
      variables: JSON.stringify({ id: 'card_8' }),
      extensions: JSON.stringify({ persistedQuery: { version: 1, sha256Hash: sha256Hex(trusted) } }),
    });
    const response = await fetch(`${setup.router.graphqlUrl}?${params}`, {
      headers: { authorization: setup.authorization, 'apollo-require-preflight': 'true' },
    });
    expect(await response.json()).toEqual({ data: { card: { id: 'card_8', last4: '4242' } } });
  });

  it('refuses unknown ids and free-form operations before calling any subgraph', async () => {
    const before = totalHits(setup.subgraphs);
    const unknown = await post(
      setup.router.graphqlUrl,
      { extensions: { persistedQuery: { version: 1, sha256Hash: sha256Hex('{ me { id } }') } } },
      { authorization: setup.authorization },
    );
    expect(unknown.status).toBe(400);
    expect(codes(unknown)).toEqual(['PERSISTED_QUERY_NOT_FOUND']);
    const freeform = await post(setup.router.graphqlUrl, { query: '{ card(id: "1") { id } }' }, { authorization: setup.authorization });
    expect(freeform.status).toBe(400);
    expect(codes(freeform)).toEqual(['PERSISTED_QUERY_NOT_FOUND']);
    expect(totalHits(setup.subgraphs)).toBe(before);
  });

  it("runs the manifest's text for a known id, never the text the client sent with it", async () => {
    const swapped = await post(
      setup.router.graphqlUrl,
      {
        query: '{ me { email } }',
        variables: { id: 'card_9' },
        extensions: { persistedQuery: { version: 1, sha256Hash: sha256Hex(trusted) } },
      },
      { authorization: setup.authorization },
    );
    expect(swapped.body).toEqual({ data: { card: { id: 'card_9', last4: '4242' } } });
  });
});

describe('APQ mode with a manifest (its operations pre-registered)', () => {
  const setup = withRouter({
    env: { ROUTER_PQ_MANIFESTS: writeManifest([{ name: 'CardById', type: 'query', body: trusted }]) },
    bearer: { userId: 'usr_m', role: 'merchant', apiKeyId: 'key_apq_manifest' },
  });

  const get = async (hash: string, id: string) => {
    const params = new URLSearchParams({
      operationName: 'CardById',
      variables: JSON.stringify({ id }),
      extensions: JSON.stringify({ persistedQuery: { version: 1, sha256Hash: hash } }),
    });
    const response = await fetch(`${setup.router.graphqlUrl}?${params}`, {
      headers: { authorization: setup.authorization, 'apollo-require-preflight': 'true' },
    });
    return { status: response.status, body: (await response.json()) as GraphQLResponse['body'] };
  };

  it('runs a hash-only GET for a manifest operation at once, before any request sent its text', async () => {
    // It missed (PERSISTED_QUERY_NOT_FOUND) until a request carrying the text (a POST of the same
    // hash, which the router completes from the manifest) had registered it in Apollo's APQ cache.
    expect(await get(sha256Hex(trusted), 'card_2')).toEqual({ status: 200, body: { data: { card: { id: 'card_2', last4: '4242' } } } });
  });

  it('runs a hash-only POST for a manifest operation at once', async () => {
    const extensions = { persistedQuery: { version: 1, sha256Hash: sha256Hex(trusted) } };
    const posted = await post(
      setup.router.graphqlUrl,
      { operationName: 'CardById', variables: { id: 'card_1' }, extensions },
      { authorization: setup.authorization },
    );
    expect(posted.body).toEqual({ data: { card: { id: 'card_1', last4: '4242' } } });
  });

  it('still misses over GET for a hash no manifest holds', async () => {
    const response = await get(sha256Hex('{ me { id } }'), 'card_3');
    expect(response.body.errors?.map((e) => e.extensions?.code)).toEqual(['PERSISTED_QUERY_NOT_FOUND']);
  });
});
