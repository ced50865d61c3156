import { revealCounters } from '@ghostpay/db';
import { freshDatabase, type TestDatabase } from '@ghostpay/test-support';
import { sql } from 'drizzle-orm';
import { getGraphQLRateLimiter } from 'graphql-rate-limit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPostgresRateLimitStore } from '../src/index.ts';

let database: TestDatabase;
beforeAll(async () => {
  database = await freshDatabase({ poolSize: 2 });
});
afterAll(async () => {
  await database?.close();
});

const max = 5;
const windowMs = 3_600_000;

describe('the PostgreSQL reveal-limit store', () => {
  it('hands the limiter at most `max` earlier calls, however many attempts the window has seen', async () => {
    const store = createPostgresRateLimitStore({ db: database.db, windowMs, max });
    const identity = { contextIdentity: 'usr_clamp', fieldIdentity: 'revealCard' };
    const lengths: number[] = [];
    for (let i = 0; i < 8; i++) lengths.push((await store.getForIdentity(identity)).length);
    expect(lengths).toEqual([0, 1, 2, 3, 4, 5, 5, 5]);

    // A caller who kept trying all window long: the counter is huge, the array is not.
    await database.db.update(revealCounters).set({ count: 2_000_000_000 }).where(sql`${revealCounters.actorId} like 'usr_clamp|%'`);
    expect(await store.getForIdentity(identity)).toHaveLength(max);
  });

  it('keeps the limit exact: graphql-rate-limit passes exactly `max` calls and refuses every later one', async () => {
    const store = createPostgresRateLimitStore({ db: database.db, windowMs, max });
    const limiter = getGraphQLRateLimiter({ store, identifyContext: () => 'usr_exact' });
    const outcomes: (string | undefined)[] = [];
    for (let i = 0; i < 12; i++) {
      outcomes.push(
        await limiter({ parent: {}, args: {}, context: {}, info: { fieldName: 'revealCard' } as never }, { max, window: '1h' }),
      );
    }
    expect(outcomes.slice(0, max)).toEqual(new Array(max).fill(undefined));
    for (const refused of outcomes.slice(max)) expect(refused).toEqual(expect.any(String));
  });
});
