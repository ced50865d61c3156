import { deleteInBatches, revealCounters } from '@ghostpay/db';
import { freshDatabase, type TestDatabase } from '@ghostpay/test-support';
import { asc, lt } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// The throwaway PostgreSQL cluster (required in CI), or PGlite where there is none.
let database: TestDatabase;
beforeAll(async () => {
  database = await freshDatabase();
});
afterAll(async () => database?.close());

const cutoff = new Date('2026-01-01T00:00:00Z');
const at = (minutes: number) => new Date(cutoff.getTime() + minutes * 60_000);

describe('deleteInBatches', () => {
  it('deletes every matching row over several batches, returns the exact count and keeps the rest', async () => {
    const { db } = database;
    await db.delete(revealCounters);
    // 23 rows before the cutoff, 4 at or after it.
    const rows = [...Array.from({ length: 23 }, (_, i) => at(-1 - i)), at(0), at(1), at(2), at(3)].map((windowStart, i) => ({
      actorId: `usr_${i}`,
      windowStart,
      count: 1,
    }));
    await db.insert(revealCounters).values(rows);
    const old = lt(revealCounters.windowStart, cutoff);
    // 5 per statement: four full batches and a short one (3) that ends it.
    expect(await deleteInBatches(db, revealCounters, old, 5)).toBe(23);
    const left = await db.select({ windowStart: revealCounters.windowStart }).from(revealCounters).orderBy(asc(revealCounters.windowStart));
    expect(left.map((row) => row.windowStart.getTime())).toEqual([at(0), at(1), at(2), at(3)].map((date) => date.getTime()));
    // Nothing left to delete; a batch size that divides the rows exactly also ends.
    expect(await deleteInBatches(db, revealCounters, old, 5)).toBe(0);
    expect(await deleteInBatches(db, revealCounters, lt(revealCounters.windowStart, at(2)), 2)).toBe(2);
    expect(await db.$count(revealCounters)).toBe(2);
  });

  it('refuses a batch size that is not a whole number ≥ 1', async () => {
    await expect(deleteInBatches(database.db, revealCounters, lt(revealCounters.windowStart, cutoff), 0)).rejects.toThrow(/batch size/);
  });
});
