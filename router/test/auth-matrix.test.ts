import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { createTestTokenIssuer, type TestTokenIssuer } from '@ghostpay/test-support';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { computeAuthMatrix, matrixCallers, renderAuthMatrix, spliceAuthMatrix } from '../src/auth-matrix.ts';
import { post, repoRoot, type StubSubgraphs, startRouter, startStubSubgraphs } from './router-harness.ts';

const supergraphSdl = readFileSync(resolve(repoRoot, 'supergraph.graphql'), 'utf8');
const rows = computeAuthMatrix(supergraphSdl);

describe('the auth directive matrix', () => {
  it('is the table in router/README.md (run npm run auth-matrix -w @ghostpay/router when this fails)', () => {
    const readme = readFileSync(resolve(repoRoot, 'router/README.md'), 'utf8');
    expect(spliceAuthMatrix(readme, renderAuthMatrix(rows)) === readme, 'router/README.md auth matrix is stale').toBe(true);
  });

  it('covers every root field of the supergraph, createToken open to all and the rest closed to anonymous callers', () => {
    expect(rows.length).toBeGreaterThanOrEqual(15);
    for (const row of rows) {
      expect(row.cells.anonymous.decision, row.field).toBe(row.field === 'createToken' ? 'allowed' : 'refused');
      expect(row.cells.admin.decision, row.field).toBe('allowed');
    }
  });

  describe('through the router, for each caller and root field', () => {
    let issuer: TestTokenIssuer;
    let subgraphs: StubSubgraphs;
    let router: Awaited<ReturnType<typeof startRouter>>;

    beforeAll(async () => {
      issuer = await createTestTokenIssuer();
      subgraphs = await startStubSubgraphs(issuer.verifier);
      router = await startRouter({
        verifier: issuer.verifier,
        urls: subgraphs.urls,
        env: { ROUTER_RATE_LIMIT_PER_MINUTE: '1000', ROUTER_ANONYMOUS_RATE_LIMIT_PER_MINUTE: '1000' },
      });
    });
    afterAll(async () => {
      await router?.close();
      await subgraphs?.close();
    });

    // Subscriptions are served over WebSocket/SSE, not HTTP POST, so only queries and mutations run here.
    for (const row of rows.filter((r) => r.operationType !== 'subscription')) {
      it(`${row.operationType} ${row.field}: ${matrixCallers.map((c) => `${c} ${row.cells[c].decision}`).join(', ')}`, async () => {
        for (const caller of matrixCallers) {
          const cell = row.cells[caller];
          const headers: Record<string, string> =
            caller === 'anonymous'
              ? {}
              : { authorization: await issuer.bearer({ userId: `usr_${caller}`, role: caller, apiKeyId: `key_matrix_${caller}` }) };
          const hitsBefore = Object.values(subgraphs.hits).reduce((a, b) => a + b, 0);
          const response = await post(router.graphqlUrl, { query: row.document, variables: row.variables }, headers);
          const routerErrors = (response.body.errors ?? []).filter((e) => e.extensions?.authorization === 'router');
          expect([...new Set(routerErrors.map((e) => e.extensions?.code))], `${caller} on ${row.field}`).toEqual(cell.codes);
          if (cell.decision === 'refused') {
            expect(response.body.data, `${caller} on ${row.field}`).toBeNull();
            expect(response.status).toBe(cell.codes[0] === 'UNAUTHENTICATED' ? 401 : 403);
            expect(
              Object.values(subgraphs.hits).reduce((a, b) => a + b, 0),
              'no subgraph was called',
            ).toBe(hitsBefore);
          } else {
            expect(response.status, `${caller} on ${row.field}: ${JSON.stringify(response.body.errors)}`).toBe(200);
          }
        }
      });
    }
  });
});
