import { describe, expect, it } from 'vitest';
import { codes, type GraphQLResponse, post, withRouter } from './router-harness.ts';

describe("a client's malformed request", () => {
  const setup = withRouter({
    env: { ROUTER_MAX_BATCH_SIZE: '3', ROUTER_RATE_LIMIT_PER_MINUTE: '1000', ROUTER_ANONYMOUS_RATE_LIMIT_PER_MINUTE: '1000' },
    bearer: { userId: 'usr_1', role: 'merchant', apiKeyId: 'key_client_mistakes' },
  });

  const serverErrorResponses = async () => {
    const text = await (await fetch(`${setup.router.url}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith('router_graphql_server_error_responses_total{'));
    return line ? Number(line.split(' ').at(-1)) : 0;
  };
  const totalHits = () => Object.values(setup.subgraphs.hits).reduce((a, b) => a + b, 0);

  /** Sends once; expects the status and codes, no subgraph call and no server-side failure counted. */
  const expectRefused = async (send: () => Promise<GraphQLResponse>, status: number, expectedCodes: string[]) => {
    const before = { hits: totalHits(), failures: await serverErrorResponses() };
    const response = await send();
    expect({ status: response.status, codes: codes(response) }).toEqual({ status, codes: expectedCodes });
    expect(JSON.stringify(response.body)).not.toContain('Internal server error');
    expect(totalHits()).toBe(before.hits);
    expect(await serverErrorResponses()).toBe(before.failures);
    return response;
  };

  const twoOperations = 'query A { me { id } } query B { me { name } }';

  it('a document with several operations and no operationName: 400 BAD_USER_INPUT', async () => {
    const response = await expectRefused(
      () => post(setup.router.graphqlUrl, { query: twoOperations }, { authorization: setup.authorization }),
      400,
      ['BAD_USER_INPUT'],
    );
    expect(response.body.errors?.[0]?.message).toBe('Must provide operation name if query contains multiple operations.');
    // Anonymous callers too (they reach the same pipeline).
    await expectRefused(() => post(setup.router.graphqlUrl, { query: 'query A { __typename } query B { __typename }' }), 400, [
      'BAD_USER_INPUT',
    ]);
  });

  it('the same over GET', async () => {
    await expectRefused(
      async () => {
        const response = await fetch(`${setup.router.graphqlUrl}?query=${encodeURIComponent(twoOperations)}`, {
          headers: { authorization: setup.authorization, 'apollo-require-preflight': 'true' },
        });
        return { status: response.status, headers: response.headers, body: (await response.json()) as GraphQLResponse['body'] };
      },
      400,
      ['BAD_USER_INPUT'],
    );
  });

  it('an operationName the document does not define: 400 BAD_USER_INPUT', async () => {
    await expectRefused(
      () => post(setup.router.graphqlUrl, { query: 'query A { me { id } }', operationName: 'B' }, { authorization: setup.authorization }),
      400,
      ['BAD_USER_INPUT'],
    );
  });

  it('in a batch, the mistaken entry is refused and the others run', async () => {
    const before = await serverErrorResponses();
    const response = await fetch(setup.router.graphqlUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: setup.authorization },
      body: JSON.stringify([{ query: '{ me { id } }' }, { query: twoOperations }]),
    });
    const body = (await response.json()) as GraphQLResponse['body'][];
    expect(body[0]).toEqual({ data: { me: { id: 'usr_1' } } });
    expect(body[1]?.errors?.map((e) => e.extensions?.code)).toEqual(['BAD_USER_INPUT']);
    expect(response.status).toBeLessThan(500);
    expect(await serverErrorResponses()).toBe(before);
  });

  describe('an explicit null for a defaulted nullable variable where a non-null value is required', () => {
    const cases: [string, { query: string; variables: Record<string, unknown> }][] = [
      [
        "@include's if, on a field another subgraph resolves (was HTTP 500)",
        { query: 'query($s: Boolean = true) { card(id: "c1") { id owner @include(if: $s) { name } } }', variables: { s: null } },
      ],
      [
        "@skip's if, on a root field (was HTTP 500)",
        { query: 'query($s: Boolean = false) { me @skip(if: $s) { id } }', variables: { s: null } },
      ],
      [
        '@include on a field of the same fetch (was 200 with INTERNAL_SERVER_ERROR)',
        { query: 'query($s: Boolean = true) { card(id: "c1") { id last4 @include(if: $s) } }', variables: { s: null } },
      ],
      [
        "a root field's non-null argument (was 200 with INTERNAL_SERVER_ERROR, after calling the subgraph)",
        { query: 'query($id: ID = "c1") { card(id: $id) { id } }', variables: { id: null } },
      ],
      [
        'the same through a fragment',
        { query: 'query($id: ID = "c1") { ...F } fragment F on Query { card(id: $id) { id } }', variables: { id: null } },
      ],
      [
        "a mutation input object's non-null field (the charges subgraph was called with it)",
        {
          query:
            'mutation($c: ID = "c1") { createCharge(input: { cardId: $c, amount: 500, currency: "USD" }, idempotencyKey: "k1") { id } }',
          variables: { c: null },
        },
      ],
    ];
    for (const [what, body] of cases) {
      it(`${what}: 400 BAD_USER_INPUT before any subgraph call`, async () => {
        const response = await expectRefused(() => post(setup.router.graphqlUrl, body, { authorization: setup.authorization }), 400, [
          'BAD_USER_INPUT',
        ]);
        const name = Object.keys(body.variables)[0];
        expect(response.body.errors?.[0]?.message).toBe(`Variable "$${name}" is null where a non-null value is required`);
      });
    }

    it('a null where null is allowed, or a default the request leaves to apply, still runs', async () => {
      const cardsHits = setup.subgraphs.hits.cards ?? 0;
      const pageNull = await post(
        setup.router.graphqlUrl,
        { query: 'query($n: Int = 5) { cards(first: $n) { edges { node { id } } } }', variables: { n: null } },
        { authorization: setup.authorization },
      );
      expect(codes(pageNull)).not.toContain('BAD_USER_INPUT');
      expect(setup.subgraphs.hits.cards).toBe(cardsHits + 1);
      const defaulted = await post(
        setup.router.graphqlUrl,
        { query: 'query($id: ID = "c1", $s: Boolean = true) { card(id: $id) { id last4 @include(if: $s) } }', variables: {} },
        { authorization: setup.authorization },
      );
      expect(defaulted.status).toBe(200);
      expect(defaulted.body).toEqual({ data: { card: { id: 'c1', last4: '4242' } } });
    });
  });

  it('an APQ hash that is not the sha256 of the query sent with it: 400 BAD_USER_INPUT', async () => {
    const response = await expectRefused(
      () =>
        post(setup.router.graphqlUrl, {
          query: '{ __typename }',
          extensions: { persistedQuery: { version: 1, sha256Hash: 'a'.repeat(64) } },
        }),
      400,
      ['BAD_USER_INPUT'],
    );
    expect(response.body.errors?.[0]?.message).toBe('provided sha does not match query');
  });

  it('an APQ version other than 1: 400 PERSISTED_QUERY_NOT_SUPPORTED', async () => {
    await expectRefused(
      () => post(setup.router.graphqlUrl, { extensions: { persistedQuery: { version: 2, sha256Hash: 'a'.repeat(64) } } }),
      400,
      ['PERSISTED_QUERY_NOT_SUPPORTED'],
    );
  });
});
