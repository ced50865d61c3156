import { createDatabase, type DatabaseHandle, preparedByIds, preparingClient, users } from '@ghostpay/db';
import { freshDatabase, type TestDatabase } from '@ghostpay/test-support';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

/**
 * Skipped, visibly, without the throwaway PostgreSQL cluster (PGlite has no pooled pg connections to prepare statements on); never in CI,
 * where the global setup fails the run when PostgreSQL is missing.
 */
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

/** One connection (so every statement lands on the same backend) preparing up to `max`. */
async function singleConnection(max?: number): Promise<DatabaseHandle> {
  const handle = await createDatabase({ url: database.url, poolSize: 1, preparedStatements: max });
  handles.push(handle);
  return handle;
}

type Prepared = { name: string; statement: string; executions: number };
/** The connection's prepared statements, read on that connection (a parameterless query: never prepared itself). */
async function preparedOn(handle: DatabaseHandle): Promise<Prepared[]> {
  const result = await handle.pool?.query<Prepared>(
    'select name, statement, (generic_plans + custom_plans)::int as executions from pg_prepared_statements order by prepare_time',
  );
  return result?.rows ?? [];
}

/** What PostgreSQL said (drizzle wraps the driver's error as its cause). */
const failureOf = (pending: Promise<unknown>) =>
  pending.then(
    () => 'no error',
    (error: Error) => (error.cause instanceof Error ? error.cause.message : error.message),
  );

const rowsOf = async (handle: DatabaseHandle, query: ReturnType<typeof sql>) =>
  ((await handle.db.execute(query)) as unknown as { rows: Array<Record<string, unknown>> }).rows;

describe('prepared statements on pg connections', () => {
  it.skipIf(withoutPostgres)('prepares a parameterized statement on first use and executes that one thereafter', async () => {
    const handle = await singleConnection();
    for (const n of [1, 2, 3]) expect(await rowsOf(handle, sql`select ${n}::int * 10 as n`)).toEqual([{ n: n * 10 }]);
    // Drizzle's builder and its type parsers (timestamptz as text) go through the same path.
    for (let i = 0; i < 2; i++) {
      const [row] = await rowsOf(handle, sql`select now() > ${'2000-01-01T00:00:00Z'}::timestamptz as later`);
      expect(row).toEqual({ later: true });
    }
    const prepared = await preparedOn(handle);
    expect(prepared).toEqual([
      { name: 'ghostpay_1', statement: 'select $1::int * 10 as n', executions: 3 },
      { name: 'ghostpay_2', statement: 'select now() > $1::timestamptz as later', executions: 2 },
    ]);
  });

  it.skipIf(withoutPostgres)(
    'runs a preparedByIds lookup as two statements, whatever the batch sizes, and no query for no ids',
    async () => {
      const handle = await singleConnection();
      const ids = Array.from({ length: 60 }, (_, i) => `usr_by_ids_${i}`);
      await handle.db.insert(users).values(ids.map((id) => ({ id, name: id, email: `${id}@example.test`, role: 'user' as const })));
      const byIds = preparedByIds((idsCondition) =>
        handle.db.select({ id: users.id }).from(users).where(idsCondition(users.id)).prepare(''),
      );
      const found = async (batch: string[]) => (await byIds(batch, {})).map((row) => row.id).sort();
      expect(await found([])).toEqual([]);
      expect(await found([ids[0]!])).toEqual([ids[0]]);
      expect(await found(['usr_unknown'])).toEqual([]);
      for (const size of [2, 3, 7, 60]) expect(await found(ids.slice(0, size))).toEqual(ids.slice(0, size).sort());
      expect(await found([ids[5]!, 'usr_unknown'])).toEqual([ids[5]]);
      const lookups = (await preparedOn(handle)).filter((p) => p.statement.startsWith('select'));
      expect(lookups.map((p) => [p.statement.replace(/^.* where /, ''), p.executions])).toEqual([
        ['"auth"."users"."id" = $1', 2],
        ['"auth"."users"."id" = any($1::text[])', 5],
      ]);
    },
  );

  it.skipIf(withoutPostgres)('leaves parameterless statements (BEGIN, COMMIT, select 1) as simple queries', async () => {
    const handle = await singleConnection();
    await handle.db.transaction(async (tx) => {
      await tx.execute(sql`select 1`);
    });
    await handle.ping();
    expect(await preparedOn(handle)).toEqual([]);
  });

  it.skipIf(withoutPostgres)('prepares at most `max` texts per connection and runs the rest unnamed, with the same answers', async () => {
    const handle = await singleConnection(2);
    for (let round = 0; round < 2; round++) {
      for (const k of [1, 2, 3, 4]) {
        // Four different texts: the constant is part of the SQL, the parameter is not.
        expect(await rowsOf(handle, sql`select ${sql.raw(String(k))} + ${round}::int as n`)).toEqual([{ n: k + round }]);
      }
    }
    expect((await preparedOn(handle)).map((p) => [p.statement, p.executions])).toEqual([
      ['select 1 + $1::int as n', 2],
      ['select 2 + $1::int as n', 2],
    ]);
  });

  it.skipIf(withoutPostgres)('prepares nothing with max 0', async () => {
    const handle = await singleConnection(0);
    for (const n of [1, 2]) expect(await rowsOf(handle, sql`select ${n}::int as n`)).toEqual([{ n }]);
    expect(await preparedOn(handle)).toEqual([]);
  });

  // A failed statement is run inside a transaction: drizzle then releases the connection to the
  // pool and keeps it (a failed `pool.query` makes pg-pool discard its connection instead), so
  // these see what happens on the same backend, which `backendPid` confirms.
  const inTransaction = (handle: DatabaseHandle, query: ReturnType<typeof sql>) =>
    failureOf(handle.db.transaction(async (tx) => tx.execute(query)));
  const backendPid = async (handle: DatabaseHandle) => (await rowsOf(handle, sql`select pg_backend_pid() as pid`))[0]?.pid;

  it.skipIf(withoutPostgres)('keeps the connection usable after a statement fails to parse or fails while running', async () => {
    const handle = await singleConnection();
    const pid = await backendPid(handle);
    // A Parse error: pg forgets the name, so the same text fails the same way again, not as
    // "prepared statement does not exist", and other statements still work.
    for (let i = 0; i < 2; i++) expect(await inTransaction(handle, sql`select ${1}::int frm nowhere`)).toMatch(/syntax error/);
    expect(await rowsOf(handle, sql`select ${7}::int as n`)).toEqual([{ n: 7 }]);

    // An execution error: the transaction rolls back; the prepared statement (not
    // transactional) stays and serves the next call.
    const divide = (d: number) => sql`select 10 / ${d}::int as q`;
    expect(await inTransaction(handle, divide(0))).toBe('division by zero');
    expect(await rowsOf(handle, divide(5))).toEqual([{ q: 2 }]);
    expect((await preparedOn(handle)).map((p) => [p.statement, p.executions])).toEqual([
      ['select $1::int as n', 1],
      ['select 10 / $1::int as q', 1],
    ]);
    expect(await backendPid(handle)).toBe(pid);
  });

  it.skipIf(withoutPostgres)('prepares a statement again when a migration changed its result columns (rolling deploys)', async () => {
    const handle = await singleConnection();
    const other = await singleConnection(0);
    await other.db.execute(sql`create table rolling (id int primary key, amount int not null)`);
    await other.db.execute(sql`insert into rolling values (1, 250)`);
    const pid = await backendPid(handle);
    const read = sql`select amount from rolling where id = ${1}`;
    expect(await rowsOf(handle, read)).toEqual([{ amount: 250 }]);

    // Another replica's migration, while this connection holds the prepared statement.
    await other.db.execute(sql`alter table rolling alter column amount type bigint`);
    // PostgreSQL refuses the old statement once; the next call prepares the text afresh.
    expect(await inTransaction(handle, read)).toBe('cached plan must not change result type');
    for (let i = 0; i < 2; i++) expect(await rowsOf(handle, read)).toEqual([{ amount: '250' }]);
    expect((await preparedOn(handle)).map((p) => [p.name, p.executions])).toEqual([
      ['ghostpay_1', 1], // the stale one, left on the server until the connection closes
      ['ghostpay_2', 2],
    ]);
    expect(await backendPid(handle)).toBe(pid);
  });

  it.skipIf(withoutPostgres)(
    'runs statements unnamed on a connection whose prepared statements vanished (a pooler that does not keep them, DISCARD ALL)',
    async () => {
      const handle = await singleConnection();
      const pid = await backendPid(handle);
      const read = sql`select ${5}::int as n`;
      expect(await rowsOf(handle, read)).toEqual([{ n: 5 }]);
      // What a transaction-mode pooler without prepared-statement support does to the next
      // transaction that lands on another server connection.
      await handle.db.execute(sql`deallocate all`);
      expect(await inTransaction(handle, read)).toBe('prepared statement "ghostpay_1" does not exist');
      // Once: then that statement and new ones run unnamed, on the same connection.
      for (let i = 0; i < 2; i++) {
        expect(await inTransaction(handle, read)).toBe('no error');
        expect(await rowsOf(handle, sql`select ${i}::int + 1 as n`)).toEqual([{ n: i + 1 }]);
      }
      expect(await preparedOn(handle)).toEqual([]);
      expect(await backendPid(handle)).toBe(pid);
    },
  );

  it('refuses a per-connection limit that is not a whole number ≥ 0', () => {
    expect(() => preparingClient(-1)).toThrow(/whole number/);
    expect(() => preparingClient(1.5)).toThrow(/whole number/);
  });
});
