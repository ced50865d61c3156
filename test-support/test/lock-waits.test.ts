/**
 * The race helpers every "another writer holds the row" test rests on. If `untilBlockedBy`
 * resolved before the writer waited, or `whileAnotherTransactionHolds` let go early, those tests
 * would pass without the race they claim to run.
 */
import type pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, inject, it } from 'vitest';
import { freshDatabase, type TestDatabase } from '../src/fresh-database.ts';
import { untilBlockedBy, whileAnotherTransactionHolds } from '../src/lock-waits.ts';

// Lock waits need a second server connection: real PostgreSQL (CI always has it: global-setup fails without).
describe.skipIf(!inject('postgresAdminUrl'))('lock waits on PostgreSQL', () => {
  let database: TestDatabase;
  let pool: pg.Pool;

  beforeAll(async () => {
    database = await freshDatabase();
    pool = database.pool!;
    await pool.query('create table lock_target (id int primary key, n int not null)');
  });
  afterAll(async () => {
    await database?.close();
  });
  beforeEach(async () => {
    await pool.query('truncate lock_target');
    await pool.query('insert into lock_target values (1, 0), (2, 0)');
  });

  /** A connection inside a transaction that holds row `id`'s lock; `finish` commits and releases it. */
  async function holdRow(id: number) {
    const holder = await pool.connect();
    await holder.query('begin');
    await holder.query('update lock_target set n = n + 100 where id = $1', [id]);
    return {
      holder,
      async finish() {
        await holder.query('commit');
        holder.release();
      },
    };
  }

  /** Backends of this database waiting for a lock right now. */
  async function lockWaiters(): Promise<number[]> {
    const { rows } = await pool.query<{ pid: number }>(
      "select pid from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'",
    );
    return rows.map((row) => row.pid);
  }

  describe('untilBlockedBy', () => {
    it('resolves only once another backend is waiting for the lock the holder has', async () => {
      const { holder, finish } = await holdRow(1);
      const writer = await pool.connect();
      try {
        const writerPid = (await writer.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid;
        // The writer starts only after a while: a helper that resolved without seeing a wait
        // would resolve before it.
        const write = new Promise((resolve) => setTimeout(resolve, 300)).then(() =>
          writer.query('update lock_target set n = n + 1 where id = 1 returning n'),
        );
        await untilBlockedBy(pool, holder);
        // The holder has not let go: what untilBlockedBy saw is still true, the writer waits.
        expect(await lockWaiters()).toContain(writerPid);
        await finish();
        // And it waited for this transaction: it saw the committed value.
        expect((await write).rows[0]).toEqual({ n: 101 });
      } finally {
        writer.release();
      }
    });

    it('fails, naming the holder and the time it waited, when nothing ever waits', async () => {
      const { holder, finish } = await holdRow(1);
      try {
        const pid = (await holder.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid;
        // A writer of another row does not wait for this one.
        await pool.query('update lock_target set n = n + 1 where id = 2');
        await expect(untilBlockedBy(pool, holder, 300)).rejects.toThrow(`no backend waited for a lock of backend ${pid} within 300 ms`);
      } finally {
        await finish();
      }
    });

    it('does not count a backend waiting for another transaction', async () => {
      const first = await holdRow(1);
      const second = await holdRow(2);
      const waiting = pool.query('update lock_target set n = n + 1 where id = 1');
      try {
        await untilBlockedBy(pool, first.holder);
        await expect(untilBlockedBy(pool, second.holder, 300)).rejects.toThrow(/no backend waited/);
      } finally {
        await first.finish();
        await second.finish();
        await waiting;
      }
    });
  });

  describe('whileAnotherTransactionHolds', () => {
    it('keeps the writer waiting until it commits: the writer answers after the release, with the committed row', async () => {
      const { result, releasedAt } = await whileAnotherTransactionHolds(
        pool,
        ['update lock_target set n = 10 where id = $1'],
        [1],
        async () =>
          (await pool.query<{ n: number; at: Date }>('update lock_target set n = n + 1 where id = 1 returning n, clock_timestamp() as at'))
            .rows[0]!,
        200,
      );
      expect(result.n).toBe(11);
      expect(result.at.getTime()).toBeGreaterThanOrEqual(releasedAt.getTime());
      expect(await lockWaiters()).toEqual([]);
    });

    it('fails, and rolls back, when the writer answers while the locks are still held', async () => {
      const writer = async () => {
        const client = await pool.connect();
        try {
          await client.query('begin');
          // Gives up waiting long before the other transaction lets go.
          await client.query("set local lock_timeout = '300ms'");
          await client.query('update lock_target set n = n + 1 where id = 1');
        } finally {
          await client.query('rollback');
          client.release();
        }
      };
      await expect(whileAnotherTransactionHolds(pool, ['update lock_target set n = 10 where id = $1'], [1], writer, 1_500)).rejects.toThrow(
        /the writer answered/,
      );
      expect((await pool.query('select n from lock_target where id = 1')).rows[0]).toEqual({ n: 0 });
      expect(pool.totalCount - pool.idleCount).toBe(0);
    });

    it('fails at once, with the writer’s answer, when the writer never waits for the locks', async () => {
      const attempt = whileAnotherTransactionHolds(
        pool,
        ['update lock_target set n = 10 where id = $1'],
        [1],
        // Writes the other row: nothing to wait for.
        async () => (await pool.query('update lock_target set n = n + 1 where id = 2 returning n')).rows[0],
        0,
      );
      await expect(attempt).rejects.toThrow(/the writer answered before it waited for the other transaction's locks/);
      expect((await pool.query('select n from lock_target where id = 1')).rows[0]).toEqual({ n: 0 });
    });

    it('fails with the writer’s own error when the writer fails before it waits', async () => {
      const attempt = whileAnotherTransactionHolds(
        pool,
        ['update lock_target set n = 10 where id = $1'],
        [1],
        async () => {
          await pool.query('select * from no_such_table');
        },
        0,
      );
      await expect(attempt).rejects.toThrow(/the writer answered before it waited/);
      await expect(attempt).rejects.toMatchObject({ cause: expect.objectContaining({ message: expect.stringMatching(/no_such_table/) }) });
    });
  });
});
