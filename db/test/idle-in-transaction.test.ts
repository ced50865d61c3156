import { createDatabase, type DatabaseHandle, newId, users } from '@ghostpay/db';
import { freshDatabase, type TestDatabase } from '@ghostpay/test-support';
import { eq, sql } from 'drizzle-orm';
import pg from 'pg';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';

/** Skipped, visibly, without the throwaway PostgreSQL cluster (PGlite has no sessions to end). */
const withoutPostgres = !inject('postgresAdminUrl');

let database: TestDatabase;
const handles: DatabaseHandle[] = [];
beforeAll(async () => {
  database = await freshDatabase({ poolSize: 1 });
});
afterAll(async () => {
  for (const handle of handles) await handle.close();
  await database?.close();
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

it.skipIf(withoutPostgres)('gives pool connections a 30 s idle-in-transaction timeout by default', async () => {
  const handle = await createDatabase({ url: database.url, poolSize: 1 });
  handles.push(handle);
  const { rows } = (await handle.db.execute(sql`show idle_in_transaction_session_timeout`)) as unknown as {
    rows: { idle_in_transaction_session_timeout: string }[];
  };
  expect(rows[0]?.idle_in_transaction_session_timeout).toBe('30s');
});

it.skipIf(withoutPostgres)(
  'ends a transaction left idle past idleInTransactionTimeoutMs, so the row locks it holds are released, and the pool goes on',
  async () => {
    const handle = await createDatabase({ url: database.url, poolSize: 1, idleInTransactionTimeoutMs: 300 });
    handles.push(handle);
    const id = newId('usr');
    await handle.db.insert(users).values({ id, name: 'locked', email: `${id}@example.test`, role: 'merchant' });

    // A process that stops between two statements of its transaction (hung, or cut off) with a row locked.
    const progress = { resumed: false };
    const stuck = handle.db.transaction(async (tx) => {
      await tx.select().from(users).where(eq(users.id, id)).for('update');
      await sleep(3_000);
      progress.resumed = true;
      await tx.execute(sql`select 1`);
    });
    const stuckOutcome = stuck.then(
      () => 'committed',
      () => 'failed',
    );
    await sleep(50);

    // Another writer of that row gets it while the first is still stopped, not once it resumes.
    const other = new pg.Client({ connectionString: database.url });
    await other.connect();
    try {
      await other.query(`set lock_timeout = '10s'`);
      await other.query('begin');
      await other.query('select id from auth.users where id = $1 for update', [id]);
      expect(progress.resumed).toBe(false);
      await other.query('rollback');
    } finally {
      await other.end();
    }
    // Its session was ended: the transaction fails rather than commit, and the pool serves the next query.
    expect(await stuckOutcome).toBe('failed');
    const { rows } = (await handle.db.execute(sql`select 1 as ok`)) as unknown as { rows: unknown[] };
    expect(rows).toEqual([{ ok: 1 }]);
  },
);
