import { clockAfterLock, inBatches, revealCounters } from '@ghostpay/db';
import { freshDatabase, type TestDatabase, whileAnotherTransactionHolds } from '@ghostpay/test-support';
import { sql } from 'drizzle-orm';
import { PgDialect } from 'drizzle-orm/pg-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

describe('clockAfterLock', () => {
  it('is the clock, or the clock at millisecond precision', () => {
    const text = (fragment: ReturnType<typeof clockAfterLock>) => new PgDialect().sqlToQuery(fragment).sql;
    expect(text(clockAfterLock())).toBe('clock_timestamp()');
    expect(text(clockAfterLock('milliseconds'))).toBe(`date_trunc('milliseconds', clock_timestamp())`);
  });

  // Lock waits need a second connection: the throwaway PostgreSQL cluster.
  describe.skipIf(!inject('postgresAdminUrl'))('where it is written', () => {
    let database: TestDatabase;
    beforeAll(async () => {
      database = await freshDatabase({ poolSize: 4 });
      await database.db.insert(revealCounters).values({ actorId: 'usr_clock', windowStart: new Date(), count: 1 });
    });
    afterAll(async () => database?.close());

    const lockOnly = ['select 1 from cards.reveal_counters where actor_id = $1 for update'];
    const readAt = async (statement: ReturnType<typeof sql>) => {
      const { rows } = (await database.db.execute(statement)) as unknown as { rows: Array<{ at: string | Date }> };
      return new Date(rows[0]!.at);
    };

    it('reads after the lock in the projection over the locking select, even when the holder only locked the row', async () => {
      const { result, releasedAt } = await whileAnotherTransactionHolds(
        database.pool!,
        lockOnly,
        ['usr_clock'],
        () =>
          readAt(sql`select ${clockAfterLock()} as at from (
            select actor_id from ${revealCounters} where actor_id = 'usr_clock' for update
          ) as locked`),
        50,
      );
      expect(result.getTime()).toBeGreaterThanOrEqual(releasedAt.getTime());
    });

    it('reads before the lock in the locking select’s own projection (what its documentation warns of)', async () => {
      const { result, releasedAt } = await whileAnotherTransactionHolds(
        database.pool!,
        lockOnly,
        ['usr_clock'],
        () => readAt(sql`select ${clockAfterLock()} as at from ${revealCounters} where actor_id = 'usr_clock' for update`),
        50,
      );
      expect(result.getTime()).toBeLessThan(releasedAt.getTime());
    });
  });
});

describe('inBatches', () => {
  it('runs batches of the size given until one comes back short, and returns the total', async () => {
    const sizes: number[] = [];
    const counts = [3, 3, 1, 3];
    expect(
      await inBatches(3, async (limit) => {
        sizes.push(limit);
        return counts.shift()!;
      }),
    ).toBe(7);
    expect(sizes).toEqual([3, 3, 3]);
    // A batch size that divides the rows exactly ends on an empty batch.
    const exact = [2, 2, 0];
    expect(await inBatches(2, async () => exact.shift()!)).toBe(4);
  });

  it('refuses a batch size that is not a whole number ≥ 1, before any batch', async () => {
    let ran = false;
    const batch = async () => {
      ran = true;
      return 0;
    };
    for (const size of [0, -1, 1.5, Number.NaN]) await expect(inBatches(size, batch)).rejects.toThrow(/batch size must be a whole number/);
    expect(ran).toBe(false);
  });
});
