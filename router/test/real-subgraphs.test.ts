import { randomBytes } from 'node:crypto';
import { authConfigSchema, createAuthService } from '@ghostpay/auth';
import { createSecretsProvider, envNameForSecret } from '@ghostpay/platform';
import { createSeed, createTestTokenIssuer, freshDatabase, type TestDatabase, type TestTokenIssuer } from '@ghostpay/test-support';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { computeAuthMatrix, matrixCallers } from '../src/auth-matrix.ts';
import type { RouterRequestEvent } from '../src/request-events.ts';
import { codes, composeRepoSupergraph, post, type StubSubgraphs, silentLogger, startRouter, startStubSubgraphs } from './router-harness.ts';
import { sensitiveOperationsPolicy } from './sensitive-operations-policy.ts';
import { startRealSubgraphs } from './subscriptions-harness.ts';

/**
 * The router in front of the real auth, cards and charges subgraphs (in process, port 0, one
 * fresh PostgreSQL database); analytics is a stand-in. Subgraph calls are counted from the
 * router's own request events (`subgraphTimings`), so nothing in the subgraphs is mocked.
 */
describe('the router over the real subgraphs', () => {
  let issuer: TestTokenIssuer;
  let database: TestDatabase;
  let real: Awaited<ReturnType<typeof startRealSubgraphs>>;
  let analytics: StubSubgraphs;
  let router: Awaited<ReturnType<typeof startRouter>>;
  const events = new Map<string, RouterRequestEvent>();
  let requestCounter = 0;
  let seed: ReturnType<typeof createSeed>;

  /** Posts with a fresh request id and returns the response with the router's event for it. */
  async function send(body: unknown, headers: Record<string, string> = {}) {
    const requestId = `req-real-${++requestCounter}`;
    const response = await post(router.graphqlUrl, body, { ...headers, 'x-request-id': requestId });
    for (let i = 0; i < 50 && !events.has(requestId); i++) await new Promise((resolve) => setTimeout(resolve, 10));
    return { ...response, event: events.get(requestId) };
  }

  beforeAll(async () => {
    issuer = await createTestTokenIssuer();
    database = await freshDatabase({ poolSize: 5 });
    seed = createSeed(database.db);
    real = await startRealSubgraphs(database, issuer);
    analytics = await startStubSubgraphs(issuer.verifier, ['analytics']);
    router = await startRouter({
      verifier: issuer.verifier,
      urls: { ...real.urls, ...analytics.urls },
      supergraphSdl: composeRepoSupergraph(),
      onRequestEvent: (event) => events.set(event.requestId, event),
      env: {
        ROUTER_RATE_LIMIT_PER_MINUTE: '1000',
        ROUTER_ANONYMOUS_RATE_LIMIT_PER_MINUTE: '1000',
        ROUTER_BREAKER_FAILURES: '2',
        ROUTER_BREAKER_OPEN_MS: '500',
      },
    });
  });
  afterAll(async () => {
    await router?.close();
    await real?.close();
    await analytics?.close();
    await database?.close();
  });

  it("resolves one query across auth, cards and charges with the caller's own data", async () => {
    const merchant = await seed.user('merchant');
    const owner = await seed.user('user');
    const card = await seed.card({ ownerId: owner.id, issuerId: merchant.id, amount: 2_500 });
    const bearer = await issuer.bearer({ userId: owner.id, role: 'user' });
    const response = await send(
      {
        query: 'query Mine($id: ID!) { me { id name } card(id: $id) { id last4 amount owner { id name } issuedBy { id } charges { id } } }',
        variables: { id: card.id },
      },
      { authorization: bearer },
    );
    expect(response.body.errors).toBeUndefined();
    expect(response.body.data).toEqual({
      me: { id: owner.id, name: owner.name },
      card: {
        id: card.id,
        last4: card.last4,
        amount: 2_500,
        owner: { id: owner.id, name: owner.name },
        issuedBy: { id: merchant.id },
        charges: [],
      },
    });
    expect(new Set(response.event?.subgraphTimings.map((t) => t.subgraph))).toEqual(new Set(['auth', 'cards', 'charges']));
  });

  describe('the auth directive matrix, each caller and root field', () => {
    const rows = computeAuthMatrix(composeRepoSupergraph()).filter((r) => r.operationType !== 'subscription');
    for (const row of rows) {
      it(`${row.operationType} ${row.field}: ${matrixCallers.map((c) => `${c} ${row.cells[c].decision}`).join(', ')}`, async () => {
        for (const caller of matrixCallers) {
          const cell = row.cells[caller];
          const headers: Record<string, string> =
            caller === 'anonymous'
              ? {}
              : { authorization: await issuer.bearer({ userId: `usr_matrix_${caller}`, role: caller, apiKeyId: `key_matrix_${caller}` }) };
          const response = await send({ query: row.document, variables: row.variables }, headers);
          const routerErrors = (response.body.errors ?? []).filter((e) => e.extensions?.authorization === 'router');
          expect([...new Set(routerErrors.map((e) => e.extensions?.code))], `${caller} on ${row.field}`).toEqual(cell.codes);
          if (cell.decision === 'refused') {
            expect(response.body.data, `${caller} on ${row.field}`).toBeNull();
            expect(response.status).toBe(cell.codes[0] === 'UNAUTHENTICATED' ? 401 : 403);
            expect(response.event?.subgraphTimings, `${caller} on ${row.field}: no subgraph called`).toEqual([]);
          } else {
            expect(response.status, `${caller} on ${row.field}`).toBe(200);
            expect(response.event?.subgraphTimings.length, `${caller} on ${row.field}: reached its subgraph`).toBeGreaterThan(0);
          }
        }
      });
    }
  });

  /** {@link sensitiveOperationsPolicy}: the intended policy, checked against the running router. */
  describe('the hand-written policy for sensitive operations, enforced by the router itself', () => {
    for (const row of sensitiveOperationsPolicy) {
      it(`${row.operation}: anonymous UNAUTHENTICATED, admin ${row.admin}, merchant ${row.merchant}, user ${row.user}`, async () => {
        const expected = { anonymous: 'UNAUTHENTICATED', admin: row.admin, merchant: row.merchant, user: row.user };
        for (const [caller, decision] of Object.entries(expected)) {
          const headers: Record<string, string> =
            caller === 'anonymous'
              ? {}
              : {
                  authorization: await issuer.bearer({
                    userId: `usr_policy_${caller}`,
                    role: caller as 'admin' | 'merchant' | 'user',
                    apiKeyId: `key_policy_${caller}`,
                  }),
                };
          const response = await send({ query: row.document }, headers);
          const label = `${caller} on ${row.operation}`;
          if (decision === 'allowed') {
            expect(response.status, label).toBe(200);
            // The router let it through: none of its own refusals, and the owning subgraph answered
            // (whatever the subgraph then decided about these made-up ids).
            expect(response.body.errors?.filter((e) => e.extensions?.authorization === 'router') ?? [], label).toEqual([]);
            expect(response.event?.subgraphTimings.length, `${label}: reached its subgraph`).toBeGreaterThan(0);
          } else {
            expect(response.status, label).toBe(decision === 'UNAUTHENTICATED' ? 401 : 403);
            expect(response.body.data, label).toBeNull();
            expect(response.body.errors, label).toEqual([
              expect.objectContaining({ extensions: expect.objectContaining({ code: decision, authorization: 'router' }) }),
            ]);
            expect(response.event?.subgraphTimings, `${label}: no subgraph called`).toEqual([]);
          }
        }
      });
    }
  });

  it('gives partial data with SUBGRAPH_UNAVAILABLE while auth is stopped, and recovers when it is back', async () => {
    const merchant = await seed.user('merchant');
    const card = await seed.card({ ownerId: merchant.id, issuerId: merchant.id });
    const bearer = await issuer.bearer({ userId: merchant.id, role: 'merchant' });
    const query = {
      query: 'query Partial($u: ID!, $c: ID!) { user(id: $u) { id name } card(id: $c) { id last4 } }',
      variables: { u: merchant.id, c: card.id },
    };
    expect((await send(query, { authorization: bearer })).body.data).toEqual({
      user: { id: merchant.id, name: merchant.name },
      card: { id: card.id, last4: card.last4 },
    });

    const authPort = Number(new URL(real.urls.auth).port);
    await real.auth.close();
    const reasons: string[] = [];
    for (let i = 0; i < 3; i++) {
      const partial = await send(query, { authorization: await issuer.bearer({ userId: merchant.id, role: 'admin' }) });
      expect(partial.body.data).toEqual({ user: null, card: { id: card.id, last4: card.last4 } });
      expect(codes(partial)).toEqual(['SUBGRAPH_UNAVAILABLE']);
      reasons.push(/is unavailable \((.*)\)$/.exec(partial.body.errors?.[0]?.message ?? '')?.[1] ?? '');
    }
    // Never by waiting out a deadline ("timed out after … ms"): a refused connection, then the open breaker.
    for (const reason of reasons) expect(['ECONNREFUSED', 'circuit open']).toContain(reason);
    expect(reasons.at(-1)).toBe('circuit open');

    // The same auth service again, on the same port (as a restarted pod behind the same address).
    const kek = `k1:${randomBytes(32).toString('base64')}`;
    const secrets = createSecretsProvider({ env: { [envNameForSecret('signing-kek')]: kek } });
    const restarted = createAuthService({
      database,
      secrets,
      logger: silentLogger,
      config: authConfigSchema.parse({ NODE_ENV: 'test', LOG_LEVEL: 'silent' }),
      verifier: issuer.verifier,
    });
    await restarted.start(authPort);
    try {
      await new Promise((resolve) => setTimeout(resolve, 600));
      const recovered = await send(query, { authorization: bearer });
      expect(recovered.body).toEqual({
        data: { user: { id: merchant.id, name: merchant.name }, card: { id: card.id, last4: card.last4 } },
      });
    } finally {
      await restarted.close();
      secrets.close();
    }
  });
});
