/**
 * poolStatementsOf: the statement texts sent through a pool while `run` runs, a marker for each
 * client checked out (a transaction), and what was sent on each of those clients; the pool and
 * its clients are themselves again afterwards.
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

  it('records the statements sent on each checked-out client, one list per checkout, until it is released', async () => {
    let released: pg.PoolClient | undefined;
    const { statements, checkouts } = await poolStatementsOf(pool, async () => {
      const first = await pool.connect();
      const second = await pool.connect();
      try {
        await first.query('begin');
        await second.query({ text: 'select $1::int as n', values: [1] });
        await first.query('select 2');
        await first.query('commit');
      } finally {
        first.release();
        second.release();
      }
      // After its release the client is the pool's own again: what pool.query sends on it is the pool's.
      await pool.query('select 3');
      // A checkout with a callback, as older code does it; its `done` releases the client.
      await new Promise<void>((resolve, reject) =>
        pool.connect((error, client, done) => {
          if (error || !client) return reject(error);
          client.query('select 4').then(
            () => {
              done();
              resolve();
            },
            (queryError: unknown) => {
              done();
              reject(queryError);
            },
          );
        }),
      );
      // Not released before run ends: put back as it was all the same.
      released = await pool.connect();
      await released.query('select 5');
    });
    try {
      expect(statements).toEqual([
        'connect (transaction or checkout)',
        'connect (transaction or checkout)',
        'select 3',
        'connect (transaction or checkout)',
        'connect (transaction or checkout)',
      ]);
      expect(checkouts).toEqual([['begin', 'select 2', 'commit'], ['select $1::int as n'], ['select 4'], ['select 5']]);
      await released!.query('select 6');
      expect(checkouts.at(-1)).toEqual(['select 5']);
    } finally {
      released?.release();
    }
    // Every client, the one checked out by a callback too, is back as the pool gave it out.
    const again = await Promise.all([pool.connect(), pool.connect()]);
    for (const client of again) {
      expect(Object.hasOwn(client, 'query')).toBe(false);
      client.release();
    }
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
