/**
 * poolStatementsOf: the statement texts sent through a pool while `run` runs, and a marker for
 * each client checked out (a transaction); the pool is itself again afterwards.
 */
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { freshDatabase, type TestDatabase } from '../src/fresh-database.ts';
import { poolStatementsOf } from '../src/pool-statements.ts';

describe.skipIf(!inject('postgresAdminUrl'))('poolStatementsOf', () => {
  let database: TestDatabase;
  let pool: pg.Pool;
  beforeAll(async () => {
    database = await freshDatabase({ poolSize: 2 });
    pool = database.pool!;
  });
  afterAll(async () => {
    await database?.close();
  });

  it('records pool statements in order and one entry per checkout, not the statements on that client', async () => {
    const { result, statements } = await poolStatementsOf(pool, async () => {
      await pool.query('select 1');
      await pool.query({ text: 'select $1::int as n', values: [2] });
      const client = await pool.connect();
      try {
        await client.query('begin');
        await client.query('select 3');
        await client.query('commit');
      } finally {
        client.release();
      }
      return (await pool.query<{ n: number }>('select 4 as n')).rows[0]!.n;
    });
    expect(result).toBe(4);
    expect(statements).toEqual(['select 1', 'select $1::int as n', 'connect (transaction or checkout)', 'select 4 as n']);
  });

  it('puts the pool back as it was, even when run throws', async () => {
    const { query, connect } = pool;
    await expect(
      poolStatementsOf(pool, async () => {
        throw new Error('run failed');
      }),
    ).rejects.toThrow('run failed');
    expect(pool.query).toBe(query);
    expect(pool.connect).toBe(connect);
  });
});
