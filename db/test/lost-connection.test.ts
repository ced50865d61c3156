import { createDatabase, type DatabaseHandle, migrate } from '@ghostpay/db';
import { freshDatabase, type TestDatabase } from '@ghostpay/test-support';
import { sql } from 'drizzle-orm';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { startSilencingProxy } from './support/silencing-proxy.ts';

/**
 * Pool connections whose server vanished without a reset (a failover, a partition, a NAT or load
 * balancer forgetting the connection): nothing answers, and no error arrives either. Skipped,
 * visibly, without the throwaway PostgreSQL cluster.
 */
const withoutPostgres = !inject('postgresAdminUrl');

let database: TestDatabase;
beforeAll(async () => {
  database = await freshDatabase({ poolSize: 1 });
});
afterAll(async () => database?.close());

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A pool of one connection through a proxy that can silence it; statement timeout 300 ms (so the response timeout is 5.3 s). */
async function poolThroughProxy(options: { responseTimeoutMs?: number } = {}) {
  const proxy = await startSilencingProxy(new URL(database.url));
  const handle = await createDatabase({ url: proxy.url, poolSize: 1, statementTimeoutMs: 300, ...options });
  cleanups.push(async () => {
    await proxy.close();
    await handle.close();
  });
  return { proxy, handle };
}

/** What `pending` came to within `ms`: its rows, its error's message, or 'no answer'. */
async function within(ms: number, pending: Promise<unknown>): Promise<unknown> {
  let timer: NodeJS.Timeout | undefined;
  const outcome = await Promise.race([
    pending.then(
      (result) => (result as { rows?: unknown }).rows ?? result,
      (error: Error) => `failed: ${(error.cause as Error | undefined)?.message ?? error.message}`,
    ),
    new Promise((resolve) => (timer = setTimeout(() => resolve('no answer'), ms))),
  ]);
  clearTimeout(timer);
  return outcome;
}

const selectOne = (handle: DatabaseHandle) => handle.db.execute(sql`select 1 as ok`);

describe.skipIf(withoutPostgres)('a pool connection whose server vanished', () => {
  it('fails its statement after statementTimeoutMs + 5 s of silence, and the next statement gets a new connection', async () => {
    const { proxy, handle } = await poolThroughProxy();
    expect(await within(2_000, selectOne(handle))).toEqual([{ ok: 1 }]);
    proxy.silence();
    expect(await within(10_000, selectOne(handle))).toMatch(/^failed: PostgreSQL sent nothing for 5300 ms/);
    expect(await within(3_000, selectOne(handle))).toEqual([{ ok: 1 }]);
  });

  it('fails a transaction whose connection went silent, and the pool does not hand that connection out again', async () => {
    const { proxy, handle } = await poolThroughProxy({ responseTimeoutMs: 1_000 });
    const transaction = handle.db.transaction(async (tx) => {
      await tx.execute(sql`select 1`);
      proxy.silence();
      await tx.execute(sql`select 2`);
    });
    expect(await within(5_000, transaction)).toMatch(/^failed: /);
    // The rollback could not reach the server either; the connection went back to the pool all the same.
    expect(await within(3_000, selectOne(handle))).toEqual([{ ok: 1 }]);
  });

  it('leaves a slow statement on a live connection alone, and migrate waits on its own connection past the response timeout', async () => {
    const { handle } = await poolThroughProxy({ responseTimeoutMs: 800 });
    // The statement timeout (300 ms) cancels it before the response timeout (800 ms): an answer, not a lost connection.
    expect(await within(5_000, handle.db.execute(sql`select pg_sleep(1)`))).toMatch(
      /^failed: canceling statement due to statement timeout/,
    );
    expect(await within(3_000, selectOne(handle))).toEqual([{ ok: 1 }]);
    // migrate's connection has no statement timeout and no response timeout: its advisory lock
    // wait (here behind a transaction holding it for 1.5 s) is not given up.
    const holder = await createDatabase({ url: database.url, poolSize: 1 });
    cleanups.push(() => holder.close());
    const holding = holder.db.transaction(async (tx) => {
      await tx.execute(sql`select pg_advisory_xact_lock(727431001)`);
      await new Promise((resolve) => setTimeout(resolve, 1_500));
    });
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(
      await within(
        10_000,
        migrate(handle).then(() => 'migrated'),
      ),
    ).toBe('migrated');
    await holding;
  });
});
