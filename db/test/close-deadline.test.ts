import { createDatabase, newId, users } from '@ghostpay/db';
import { freshDatabase, type TestDatabase } from '@ghostpay/test-support';
import { eq, sql } from 'drizzle-orm';
import pg from 'pg';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';

/**
 * `close()` of a pg database waits for checked-out connections only until its deadline: a
 * service closes its database after its own drain (SHUTDOWN_TIMEOUT_MS), and pg's `pool.end()`
 * alone waited for a statement still running (up to the statement timeout) or a holder that
 * never released (for ever). Skipped, visibly, without the throwaway PostgreSQL cluster (PGlite
 * has no pool).
 */
const withoutPostgres = !inject('postgresAdminUrl');

let database: TestDatabase;
beforeAll(async () => {
  database = await freshDatabase({ poolSize: 1 });
});
afterAll(async () => {
  await database?.close();
});

/** What became of `work`: 'committed' or 'failed'. */
const outcomeOf = (work: Promise<unknown>) =>
  work.then(
    () => 'committed' as const,
    () => 'failed' as const,
  );

it.skipIf(withoutPostgres)(
  'closes a connection busy with a statement once the deadline passes: the statement fails and its transaction writes nothing',
  async () => {
    // No statement timeout: only the close can end the statement before it does.
    const handle = await createDatabase({ url: database.url, poolSize: 2, statementTimeoutMs: 0 });
    const id = newId('usr');
    let started!: () => void;
    const running = new Promise<void>((resolve) => (started = resolve));
    const busy = outcomeOf(
      handle.db.transaction(async (tx) => {
        await tx.insert(users).values({ id, name: 'half', email: `${id}@example.test`, role: 'merchant' });
        started();
        // Longer than the test's own timeout: a close that waits for it never ends in time.
        await tx.execute(sql`select pg_sleep(60)`);
      }),
    );
    await running;
    await handle.close({ timeoutMs: 200 });
    // close() came back while the statement ran: its transaction failed rather than committed.
    expect(await busy).toBe('failed');
    const check = new pg.Client({ connectionString: database.url });
    await check.connect();
    try {
      expect((await check.query('select 1 from auth.users where id = $1', [id])).rowCount).toBe(0);
      // The server ends the abandoned session's sleep as well, rolling the insert back.
      await check.query(
        `select pg_terminate_backend(pid) from pg_stat_activity where query like '%pg_sleep(60)%' and pid <> pg_backend_pid()`,
      );
    } finally {
      await check.end();
    }
  },
);

it.skipIf(withoutPostgres)('closes a connection whose holder never releases it once the deadline passes', async () => {
  const handle = await createDatabase({ url: database.url, poolSize: 2 });
  let resume!: () => void;
  const held = new Promise<void>((resolve) => (resume = resolve));
  let entered!: () => void;
  const inside = new Promise<void>((resolve) => (entered = resolve));
  const stuck = outcomeOf(
    handle.db.transaction(async (tx) => {
      await tx.execute(sql`select 1`);
      entered();
      // A holder waiting on something else (a hung call) between two statements.
      await held;
      await tx.execute(sql`select 1`);
    }),
  );
  await inside;
  await handle.close({ timeoutMs: 200 });
  resume();
  expect(await stuck).toBe('failed');
});

it.skipIf(withoutPostgres)('lets a statement that ends within the deadline finish and commit', async () => {
  const handle = await createDatabase({ url: database.url, poolSize: 2 });
  const id = newId('usr');
  let started!: () => void;
  const running = new Promise<void>((resolve) => (started = resolve));
  const short = outcomeOf(
    handle.db.transaction(async (tx) => {
      await tx.insert(users).values({ id, name: 'whole', email: `${id}@example.test`, role: 'merchant' });
      started();
      await tx.execute(sql`select pg_sleep(0.3)`);
    }),
  );
  await running;
  await handle.close({ timeoutMs: 20_000 });
  expect(await short).toBe('committed');
  const check = await createDatabase({ url: database.url, poolSize: 1 });
  try {
    expect(await check.db.select({ id: users.id }).from(users).where(eq(users.id, id))).toEqual([{ id }]);
  } finally {
    await check.close();
  }
});

it.skipIf(withoutPostgres)(
  'a statement that commits on its own (or a COMMIT) still running at the deadline may commit though its holder sees a failure',
  async () => {
    // The socket is destroyed under the holder, but the server runs the statement on and commits
    // it before it next writes to the client: the outcome the holder sees is not what was stored,
    // so a caller must be able to retry idempotently (README, Pool).
    const handle = await createDatabase({ url: database.url, poolSize: 2, statementTimeoutMs: 0 });
    const id = newId('usr');
    const email = `${id}@example.test`;
    const write = outcomeOf(
      handle.db.execute(
        sql`with added as (insert into auth.users (id, name, email, role) values (${id}, 'late', ${email}, 'merchant') returning id) select pg_sleep(1) from added`,
      ),
    );
    const check = new pg.Client({ connectionString: database.url });
    await check.connect();
    try {
      // Closed once the statement is running on the server.
      while (
        (await check.query(`select 1 from pg_stat_activity where query like '%pg_sleep(1) from added%' and pid <> pg_backend_pid()`))
          .rowCount === 0
      );
      await handle.close({ timeoutMs: 100 });
      expect(await write).toBe('failed');
      let stored = 0;
      for (let round = 0; round < 100 && stored === 0; round++) {
        stored = (await check.query('select 1 from auth.users where id = $1', [id])).rowCount ?? 0;
        if (stored === 0) await new Promise((resolve) => setTimeout(resolve, 100));
      }
      expect(stored).toBe(1);
    } finally {
      await check.end();
    }
  },
);
