import { createTestTokenIssuer, type LoopbackServer, startLoopbackServer, type TestTokenIssuer } from '@ghostpay/test-support';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { codes, post, type StubSubgraphs, startRouter, startStubSubgraphs, withRouter } from './router-harness.ts';

const query = { query: '{ user(id: "usr_1") { id name } card(id: "card_1") { id last4 } }' };

/** The value of one series, whatever order prom-client prints its labels in. */
async function metricValue(routerUrl: string, name: string, labels: Record<string, string>): Promise<number | undefined> {
  const text = await (await fetch(`${routerUrl}/metrics`)).text();
  const wanted = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && wanted.every((w) => l.includes(w)));
  return line ? Number(line.split(' ').at(-1)) : undefined;
}

describe('a subgraph going down and coming back', () => {
  const setup = withRouter({
    env: { ROUTER_BREAKER_FAILURES: '2', ROUTER_BREAKER_OPEN_MS: '500', ROUTER_RATE_LIMIT_PER_MINUTE: '1000' },
    bearer: { userId: 'usr_1', role: 'admin', apiKeyId: 'key_resilience' },
  });

  it("answers the other subgraphs' fields and nulls the stopped one's with SUBGRAPH_UNAVAILABLE, fast, then recovers", async () => {
    const healthy = await post(setup.router.graphqlUrl, query, { authorization: setup.authorization });
    expect(healthy.body).toEqual({ data: { user: { id: 'usr_1', name: 'User usr_1' }, card: { id: 'card_1', last4: '4242' } } });

    await setup.subgraphs.stop('auth');
    const reasons: string[] = [];
    for (let i = 0; i < 3; i++) {
      const partial = await post(setup.router.graphqlUrl, query, { authorization: setup.authorization });
      expect(partial.status).toBe(200);
      expect(partial.body.data).toEqual({ user: null, card: { id: 'card_1', last4: '4242' } });
      expect(codes(partial)).toEqual(['SUBGRAPH_UNAVAILABLE']);
      expect(partial.body.errors?.[0]?.extensions?.serviceName).toBe('auth');
      reasons.push(/is unavailable \((.*)\)$/.exec(partial.body.errors?.[0]?.message ?? '')?.[1] ?? '');
    }
    // Fast: every answer came from a refused connection or the open breaker, never from waiting
    // out a deadline (that would read "timed out after … ms").
    for (const reason of reasons) expect(['ECONNREFUSED', 'circuit open']).toContain(reason);
    expect(reasons.at(-1)).toBe('circuit open');
    // Two consecutive failures opened the breaker: the third call never touched the network.
    expect(await metricValue(setup.router.url, 'circuit_breaker_state', { subgraph: 'auth' })).toBe(2);
    expect(
      await metricValue(setup.router.url, 'subgraph_fetch_duration_seconds_count', { subgraph: 'auth', outcome: 'rejected' }),
    ).toBeGreaterThanOrEqual(1);

    await setup.subgraphs.restart('auth');
    await new Promise((resolve) => setTimeout(resolve, 600));
    // Half-open: one trial call goes through, succeeds, and closes the breaker.
    const recovered = await post(setup.router.graphqlUrl, query, { authorization: setup.authorization });
    expect(recovered.body).toEqual({ data: { user: { id: 'usr_1', name: 'User usr_1' }, card: { id: 'card_1', last4: '4242' } } });
    expect(await metricValue(setup.router.url, 'circuit_breaker_state', { subgraph: 'auth' })).toBe(0);
  });
});

describe('a subgraph that does not answer', () => {
  let issuer: TestTokenIssuer;
  let subgraphs: StubSubgraphs;
  let hanging: LoopbackServer;
  let calls = 0;
  let mode: 'silent' | 'partial' = 'silent';
  let router: Awaited<ReturnType<typeof startRouter>>;

  beforeAll(async () => {
    issuer = await createTestTokenIssuer();
    subgraphs = await startStubSubgraphs(issuer.verifier, ['cards', 'charges']);
    hanging = await startLoopbackServer((_req, res) => {
      calls++; // accept and never answer, or (partial) answer the head and the start of a body, then stall
      if (mode === 'partial') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.write('{"data":{"user":');
      }
    });
    const url = `${hanging.url}/graphql`;
    router = await startRouter({
      verifier: issuer.verifier,
      urls: { ...subgraphs.urls, auth: url },
      env: { ROUTER_SUBGRAPH_TIMEOUT_MS: '5000', ROUTER_SUBGRAPH_TIMEOUTS_MS: 'auth=300' },
    });
  });
  afterAll(async () => {
    await router?.close();
    await hanging?.close();
    await subgraphs?.close();
  });

  /**
   * The query with auth timing out: its fields null, the rest answered. The error names the
   * deadline that fired, so it proves the per-subgraph 300 ms one applied, not the 5 s default.
   */
  const expectAuthTimedOut = async () => {
    const response = await post(router.graphqlUrl, query, { authorization: await issuer.bearer({ userId: 'usr_1', role: 'admin' }) });
    expect(response.body.data).toEqual({ user: null, card: { id: 'card_1', last4: '4242' } });
    expect(response.body.errors?.[0]).toMatchObject({ extensions: { code: 'SUBGRAPH_UNAVAILABLE' } });
    expect(response.body.errors?.[0]?.message).toBe('Subgraph "auth" is unavailable (timed out after 300 ms)');
  };

  it('times the call out and still returns the rest; a timed-out query is not retried', async () => {
    await expectAuthTimedOut();
    expect(calls).toBe(1);
  });

  it('times out a call whose answer starts and then stalls: the deadline covers the body too', async () => {
    mode = 'partial';
    await expectAuthTimedOut();
    expect(calls).toBe(2);
  });
});
