import type { GraphQLDataSourceProcessOptions } from '@apollo/gateway';
import { type LoopbackServer, startLoopbackServer } from '@ghostpay/test-support';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRetryBudget, SubgraphDataSource } from '../src/subgraph-data-source.ts';

/** A subgraph whose every odd request has its connection reset before any answer. */
describe('subgraph calls: retries', () => {
  let server: LoopbackServer;
  let url: string;
  let requests = 0;

  beforeAll(async () => {
    server = await startLoopbackServer((req, res) => {
      requests++;
      if (requests % 2 === 1) {
        req.socket.destroy();
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ data: { ok: true } }));
    });
    url = `${server.url}/graphql`;
  });
  afterAll(async () => {
    await server.close();
  });

  const call = (source: SubgraphDataSource, operationType: string) =>
    source.process({
      kind: 'incoming operation',
      request: { query: `${operationType} { ok }` },
      context: { forwardHeaders: {}, operationType, subgraphTimings: [] },
    } as unknown as GraphQLDataSourceProcessOptions<Record<string, unknown>>);

  it('retries a query once after a reset connection', async () => {
    const source = new SubgraphDataSource({ name: 'flaky', url, retryBudget: createRetryBudget() });
    requests = 0;
    await expect(call(source, 'query')).resolves.toEqual({ data: { ok: true } });
    expect(requests).toBe(2);
    await source.close();
  });

  it('never retries a mutation', async () => {
    const source = new SubgraphDataSource({ name: 'flaky', url, retryBudget: createRetryBudget() });
    requests = 0;
    await expect(call(source, 'mutation')).rejects.toMatchObject({ extensions: { code: 'SUBGRAPH_UNAVAILABLE' } });
    expect(requests).toBe(1);
    await source.close();
  });

  it('stops retrying when the retry budget is spent', async () => {
    const source = new SubgraphDataSource({
      name: 'flaky',
      url,
      retryBudget: createRetryBudget({ max: 1, ratio: 0 }),
      breaker: { failureThreshold: 100 },
    });
    requests = 0;
    await expect(call(source, 'query')).resolves.toEqual({ data: { ok: true } }); // reset, retried (budget 1 → 0)
    requests = 0;
    await expect(call(source, 'query')).rejects.toMatchObject({ extensions: { code: 'SUBGRAPH_UNAVAILABLE' } });
    expect(requests).toBe(1);
    await source.close();
  });
});
