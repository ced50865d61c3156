/**
 * `router_graphql_server_error_responses_total`: GraphQL HTTP responses that failed on our side
 * although their status is below 500, counted once per response. The availability SLI and the
 * error-rate alert divide it by requests (grafana/alerts/ghostpay-rules.yaml), so it must count
 * responses, never errors: `graphql_errors_total` beside it counts every error.
 */
import { ErrorCode, GhostPayError } from '@ghostpay/platform';
import { createTestTokenIssuer, type LoopbackServer, startLoopbackServer, type TestTokenIssuer } from '@ghostpay/test-support';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { codes, post, type StubSubgraphs, startRouter, startStubSubgraphs } from './router-harness.ts';

const counter = 'router_graphql_server_error_responses_total';

describe('router_graphql_server_error_responses_total', () => {
  let issuer: TestTokenIssuer;
  let subgraphs: StubSubgraphs;
  let cards: LoopbackServer;
  let router: Awaited<ReturnType<typeof startRouter>>;
  let auth: string;

  /** What the stand-in cards subgraph answers for `card(id:)`: its data, or errors with these codes. */
  const cardAnswer = (id: string) => {
    if (id === 'card_404')
      return { data: { card: null }, errors: [{ message: 'No such card', path: ['card'], extensions: { code: 'NOT_FOUND' } }] };
    if (id === 'card_bad') {
      return { data: { card: null }, errors: [{ message: 'id: not a card id', path: ['card'], extensions: { code: 'BAD_USER_INPUT' } }] };
    }
    if (id === 'card_db_down') {
      return {
        data: { card: null },
        errors: [
          { message: 'Database unavailable', path: ['card'], extensions: { code: 'SERVICE_UNAVAILABLE' } },
          { message: 'Internal server error', path: ['card', 'last4'], extensions: { code: 'INTERNAL_SERVER_ERROR' } },
        ],
      };
    }
    return { data: { card: { id, last4: '4242' } } };
  };

  beforeAll(async () => {
    issuer = await createTestTokenIssuer();
    subgraphs = await startStubSubgraphs(issuer.verifier, ['auth', 'charges', 'analytics']);
    cards = await startLoopbackServer((_req, res, body) => {
      const { variables } = JSON.parse(body) as { variables?: Record<string, unknown> };
      const id = String(Object.values(variables ?? {})[0] ?? /card_\w+/.exec(body)?.[0]);
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(cardAnswer(id)));
    });
    router = await startRouter({
      // A verifier whose signing keys cannot be fetched for one token: the router refuses with 503.
      verifier: {
        verify: (token) => issuer.verifier.verify(token),
        verifyAuthorization: async (header) => {
          if (header === 'Bearer keys-unavailable') throw new GhostPayError(ErrorCode.SERVICE_UNAVAILABLE, 'Signing keys unavailable');
          return issuer.verifier.verifyAuthorization(header);
        },
      },
      urls: { ...subgraphs.urls, cards: `${cards.url}/graphql` },
      env: { ROUTER_MAX_BATCH_SIZE: '5', ROUTER_RATE_LIMIT_PER_MINUTE: '1000', ROUTER_ANONYMOUS_RATE_LIMIT_PER_MINUTE: '1000' },
    });
    auth = await issuer.bearer({ userId: 'usr_1', role: 'merchant', apiKeyId: 'key_server_errors' });
  });
  afterAll(async () => {
    await router?.close();
    await cards?.close();
    await subgraphs?.close();
  });

  /** The router's own /metrics: the value of one series (0 when absent), and the TYPE lines. */
  const scrape = async () => {
    const text = await (await fetch(`${router.url}/metrics`)).text();
    const value = (name: string, labels: Record<string, string> = {}) => {
      const wanted = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
      const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && wanted.every((w) => l.includes(w)));
      return line ? Number(line.split(' ').at(-1)) : 0;
    };
    return { text, value };
  };

  /** How much the counter and the per-code error counts moved over `send`. */
  const delta = async (send: () => Promise<void>, errorCodes: string[] = []) => {
    const before = await scrape();
    await send();
    const after = await scrape();
    return {
      responses: after.value(counter) - before.value(counter),
      errors: Object.fromEntries(
        errorCodes.map((code) => [code, after.value('graphql_errors_total', { code }) - before.value('graphql_errors_total', { code })]),
      ),
    };
  };

  it('is exposed on /metrics as a counter with the service label, from the first scrape', async () => {
    const { text } = await scrape();
    expect(text).toContain(`# TYPE ${counter} counter`);
    expect(text).toMatch(new RegExp(`^${counter}\\{service="router"\\} 0$`, 'm'));
  });

  it('counts one HTTP 200 response carrying two server-side errors exactly once', async () => {
    const moved = await delta(async () => {
      const response = await post(router.graphqlUrl, { query: '{ card(id: "card_db_down") { id last4 } }' }, { authorization: auth });
      expect(response.status).toBe(200);
      expect(codes(response).sort()).toEqual(['INTERNAL_SERVER_ERROR', 'SERVICE_UNAVAILABLE']);
    }, ['SERVICE_UNAVAILABLE', 'INTERNAL_SERVER_ERROR']);
    expect(moved).toEqual({ responses: 1, errors: { SERVICE_UNAVAILABLE: 1, INTERNAL_SERVER_ERROR: 1 } });
  });

  it('counts a response with two subgraphs down once, while graphql_errors_total counts both errors', async () => {
    await subgraphs.stop('auth');
    await subgraphs.stop('charges');
    try {
      const moved = await delta(async () => {
        const response = await post(
          router.graphqlUrl,
          { query: '{ user(id: "usr_1") { id name } card(id: "card_1") { id last4 } charge(id: "ch_1") { id } }' },
          { authorization: auth },
        );
        expect(response.status).toBe(200);
        // card and charge are non-null fields: charges' error nulls the whole data.
        expect(response.body.data).toBeNull();
        expect(codes(response)).toEqual(['SUBGRAPH_UNAVAILABLE', 'SUBGRAPH_UNAVAILABLE']);
      }, ['SUBGRAPH_UNAVAILABLE']);
      expect(moved).toEqual({ responses: 1, errors: { SUBGRAPH_UNAVAILABLE: 2 } });

      // A batch is one HTTP response: two operations, each with a server-side error, count once.
      const batch = await delta(async () => {
        const response = await fetch(router.graphqlUrl, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: auth },
          body: JSON.stringify([{ query: '{ user(id: "usr_1") { id } }' }, { query: '{ charge(id: "ch_1") { id } }' }]),
        });
        expect(response.status).toBe(200);
        const body = (await response.json()) as { errors?: { extensions?: { code?: string } }[] }[];
        expect(body.map((item) => item.errors?.map((e) => e.extensions?.code))).toEqual([
          ['SUBGRAPH_UNAVAILABLE'],
          ['SUBGRAPH_UNAVAILABLE'],
        ]);
      }, ['SUBGRAPH_UNAVAILABLE']);
      expect(batch).toEqual({ responses: 1, errors: { SUBGRAPH_UNAVAILABLE: 2 } });

      // A client-side error beside a server-side one: still one failed response.
      const mixed = await delta(async () => {
        const response = await post(
          router.graphqlUrl,
          { query: '{ user(id: "usr_1") { id } card(id: "card_404") { id } }' },
          { authorization: auth },
        );
        expect(codes(response).sort()).toEqual(['NOT_FOUND', 'SUBGRAPH_UNAVAILABLE']);
      });
      expect(mixed.responses).toBe(1);
    } finally {
      await subgraphs.restart('auth');
      await subgraphs.restart('charges');
    }
  });

  it.each<[string, () => Promise<{ status: number; codes: string[] }>]>([
    [
      'NOT_FOUND (HTTP 200, from a subgraph)',
      async () => {
        const response = await post(router.graphqlUrl, { query: '{ card(id: "card_404") { id } }' }, { authorization: auth });
        return { status: response.status, codes: codes(response) };
      },
    ],
    [
      'BAD_USER_INPUT (HTTP 200, from a subgraph)',
      async () => {
        const response = await post(router.graphqlUrl, { query: '{ card(id: "card_bad") { id } }' }, { authorization: auth });
        return { status: response.status, codes: codes(response) };
      },
    ],
    [
      'UNAUTHENTICATED (no token)',
      async () => {
        const response = await post(router.graphqlUrl, { query: '{ card(id: "card_1") { id } }' });
        return { status: response.status, codes: codes(response) };
      },
    ],
  ])('does not count a response with only a client-side error: %s', async (_what, send) => {
    let answer: { status: number; codes: string[] } = { status: 0, codes: [] };
    const moved = await delta(async () => {
      answer = await send();
    });
    expect(answer.status).toBeLessThan(500);
    expect(answer.codes).toHaveLength(1);
    expect(['NOT_FOUND', 'BAD_USER_INPUT', 'UNAUTHENTICATED']).toContain(answer.codes[0]);
    expect(moved.responses).toBe(0);
  });

  it('does not count a 5xx response (its status already counts it) nor a healthy one', async () => {
    const refused = await delta(async () => {
      const response = await post(
        router.graphqlUrl,
        { query: '{ card(id: "card_1") { id } }' },
        { authorization: 'Bearer keys-unavailable' },
      );
      expect(response.status).toBe(503);
      expect(codes(response)).toEqual(['SERVICE_UNAVAILABLE']);
    });
    expect(refused.responses).toBe(0);
    const healthy = await delta(async () => {
      const response = await post(router.graphqlUrl, { query: '{ card(id: "card_1") { id last4 } }' }, { authorization: auth });
      expect(response.body).toEqual({ data: { card: { id: 'card_1', last4: '4242' } } });
    });
    expect(healthy.responses).toBe(0);
  });
});
