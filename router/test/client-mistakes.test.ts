/**
 * Requests that are the client's mistakes (a document with several operations and no
 * operationName, an operationName the document lacks, an APQ hash that is not the query's, an
 * APQ version other than 1) get a 4xx with a code of the closed list, reach no subgraph and are
 * no server-side failure to the availability SLI (`router_graphql_server_error_responses_total`,
 * 5xx responses). They were answered as unexpected errors: 500 or 400 `INTERNAL_SERVER_ERROR`.
 */
import { createTestTokenIssuer, type TestTokenIssuer } from '@ghostpay/test-support';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { codes, type GraphQLResponse, post, type StubSubgraphs, startRouter, startStubSubgraphs } from './router-harness.ts';

describe("a client's malformed request", () => {
  let issuer: TestTokenIssuer;
  let subgraphs: StubSubgraphs;
  let router: Awaited<ReturnType<typeof startRouter>>;
  let auth: string;

  beforeAll(async () => {
    issuer = await createTestTokenIssuer();
    subgraphs = await startStubSubgraphs(issuer.verifier);
    router = await startRouter({
      verifier: issuer.verifier,
      urls: subgraphs.urls,
      env: { ROUTER_MAX_BATCH_SIZE: '3', ROUTER_RATE_LIMIT_PER_MINUTE: '1000', ROUTER_ANONYMOUS_RATE_LIMIT_PER_MINUTE: '1000' },
    });
    auth = await issuer.bearer({ userId: 'usr_1', role: 'merchant', apiKeyId: 'key_client_mistakes' });
  });
  afterAll(async () => {
    await router?.close();
    await subgraphs?.close();
  });

  const serverErrorResponses = async () => {
    const text = await (await fetch(`${router.url}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith('router_graphql_server_error_responses_total{'));
    return line ? Number(line.split(' ').at(-1)) : 0;
  };
  const totalHits = () => Object.values(subgraphs.hits).reduce((a, b) => a + b, 0);

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
    const response = await expectRefused(() => post(router.graphqlUrl, { query: twoOperations }, { authorization: auth }), 400, [
      'BAD_USER_INPUT',
    ]);
    expect(response.body.errors?.[0]?.message).toBe('Must provide operation name if query contains multiple operations.');
    // Anonymous callers too (they reach the same pipeline).
    await expectRefused(() => post(router.graphqlUrl, { query: 'query A { __typename } query B { __typename }' }), 400, ['BAD_USER_INPUT']);
  });

  it('the same over GET', async () => {
    await expectRefused(
      async () => {
        const response = await fetch(`${router.graphqlUrl}?query=${encodeURIComponent(twoOperations)}`, {
          headers: { authorization: auth, 'apollo-require-preflight': 'true' },
        });
        return { status: response.status, headers: response.headers, body: (await response.json()) as GraphQLResponse['body'] };
      },
      400,
      ['BAD_USER_INPUT'],
    );
  });

  it('an operationName the document does not define: 400 BAD_USER_INPUT', async () => {
    await expectRefused(
      () => post(router.graphqlUrl, { query: 'query A { me { id } }', operationName: 'B' }, { authorization: auth }),
      400,
      ['BAD_USER_INPUT'],
    );
  });

  it('in a batch, the mistaken entry is refused and the others run', async () => {
    const before = await serverErrorResponses();
    const response = await fetch(router.graphqlUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: auth },
      body: JSON.stringify([{ query: '{ me { id } }' }, { query: twoOperations }]),
    });
    const body = (await response.json()) as GraphQLResponse['body'][];
    expect(body[0]).toEqual({ data: { me: { id: 'usr_1' } } });
    expect(body[1]?.errors?.map((e) => e.extensions?.code)).toEqual(['BAD_USER_INPUT']);
    expect(response.status).toBeLessThan(500);
    expect(await serverErrorResponses()).toBe(before);
  });

  it('an APQ hash that is not the sha256 of the query sent with it: 400 BAD_USER_INPUT', async () => {
    const response = await expectRefused(
      () =>
        post(router.graphqlUrl, {
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
      () => post(router.graphqlUrl, { extensions: { persistedQuery: { version: 2, sha256Hash: 'a'.repeat(64) } } }),
      400,
      ['PERSISTED_QUERY_NOT_SUPPORTED'],
    );
  });
});
