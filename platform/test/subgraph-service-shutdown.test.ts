import { capturingLogger, createTestTokenIssuer } from '@ghostpay/test-support';
import { parse } from 'graphql';
import { describe, expect, it } from 'vitest';
import { createMetricsRegistry, createPeriodicJob, createSubgraphService, type SubgraphServiceOptions } from '../src/index.ts';

/** A demo subgraph with `overrides`; `closed` counts its `onClose` calls (where the pools close). */
async function demoService(overrides: Partial<SubgraphServiceOptions<never>> = {}) {
  const log = capturingLogger('demo', { level: 'info' });
  const closed = { count: 0 };
  const service = createSubgraphService<never>({
    name: 'demo',
    typeDefs: parse('type Query { ok: Boolean }'),
    resolvers: { Query: { ok: () => true } },
    verifier: (await createTestTokenIssuer()).verifier,
    logger: log.logger,
    registry: createMetricsRegistry('demo'),
    onClose: async () => {
      closed.count++;
    },
    ...overrides,
  });
  return { service, closed, log };
}

describe('subgraph service shutdown', () => {
  it('abandons a job run that never ends after the shutdown bound, logging its job, and still closes its resources', async () => {
    const { logger } = capturingLogger('demo');
    let runStarted = false;
    const stuck = createPeriodicJob({
      name: 'stuck-sweep',
      intervalMs: 1,
      logger,
      // A query that never answers.
      run: () => {
        runStarted = true;
        return new Promise<number>(() => {});
      },
    });
    const { service, closed, log } = await demoService({ jobs: [stuck], shutdownTimeoutMs: 200 });
    await service.start(0);
    while (!runStarted) await new Promise((resolve) => setTimeout(resolve, 5));
    await service.close();
    expect(closed.count).toBe(1);
    expect(stuck.running).toBe(false);
    expect(log.parsed()).toContainEqual(
      expect.objectContaining({
        level: 40,
        msg: 'shutdown bound reached; abandoning periodic job runs still in progress',
        jobs: ['stuck-sweep'],
        timeoutMs: 200,
      }),
    );
  }, 5_000);

  it('waits for a job run that ends within the bound before closing its resources, and abandons nothing', async () => {
    const { logger } = capturingLogger('demo');
    let release: () => void = () => {};
    let runStarted = false;
    let finished = false;
    const job = createPeriodicJob({
      name: 'sweep',
      intervalMs: 1,
      logger,
      run: () =>
        new Promise<number>((resolve) => {
          runStarted = true;
          release = () => {
            finished = true;
            resolve(1);
          };
        }),
    });
    let finishedWhenClosed: boolean | undefined;
    const { service, log } = await demoService({
      jobs: [job],
      shutdownTimeoutMs: 10_000,
      onClose: async () => {
        finishedWhenClosed = finished;
      },
    });
    await service.start(0);
    while (!runStarted) await new Promise((resolve) => setTimeout(resolve, 5));
    const closing = service.close();
    release();
    await closing;
    // The pools close after the run ended, not under it.
    expect(finishedWhenClosed).toBe(true);
    expect(log.parsed<{ level: number }>().filter((line) => line.level >= 40)).toEqual([]);
  });

  it('closes (its onClose runs) when it was never started', async () => {
    const { service, closed } = await demoService();
    await expect(service.close()).resolves.toBeUndefined();
    expect(closed.count).toBe(1);
  });

  it('closes (its onClose runs) after a start that failed in Apollo, and reports the start error to the caller', async () => {
    const { service, closed } = await demoService({
      plugins: [
        {
          async serverWillStart() {
            throw new Error('plugin refused to start');
          },
        },
      ],
    });
    await expect(service.start(0)).rejects.toThrow('plugin refused to start');
    await expect(service.close()).resolves.toBeUndefined();
    expect(closed.count).toBe(1);
  });
});
