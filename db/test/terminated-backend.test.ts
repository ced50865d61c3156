import { freshDatabase, type TestDatabase } from '@ghostpay/test-support';
import { sql } from 'drizzle-orm';
import pg from 'pg';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';

/**
 * Skipped, visibly, without the throwaway PostgreSQL cluster (PGlite has no backends to terminate); never in CI,
 * where the global setup fails the run when PostgreSQL is missing.
 */
const withoutPostgres = !inject('postgresAdminUrl');

let database: TestDatabase;

beforeAll(async () => {
  database = await freshDatabase({ poolSize: 2 });
});

afterAll(async () => {
  await database?.close();
});

it.skipIf(withoutPostgres)('survives the backend of an open transaction being terminated, and the pool recovers', async () => {
  const admin = new pg.Client({ connectionString: database.url });
  await admin.connect();
  const uncaught: unknown[] = [];
  const onUncaught = (error: unknown) => uncaught.push(error);
  process.on('uncaughtException', onUncaught);
  try {
    const transaction = database.db.transaction(async (tx) => {
      const [{ pid }] = ((await tx.execute(sql`select pg_backend_pid() as pid`)) as { rows: [{ pid: number }] }).rows;
      // Terminated while idle in transaction: no query is running to receive the error.
      await admin.query('select pg_terminate_backend($1)', [pid]);
      await new Promise((done) => setTimeout(done, 200));
      await tx.execute(sql`select 1`);
    });
    await expect(transaction).rejects.toThrow();
    expect(uncaught).toEqual([]);
    const { rows } = (await database.db.execute(sql`select 1 as ok`)) as { rows: unknown[] };
    expect(rows).toEqual([{ ok: 1 }]);
  } finally {
    process.off('uncaughtException', onUncaught);
    await admin.end();
  }
});
