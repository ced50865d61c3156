import { describe, expect, it } from 'vitest';
import { benchPlan } from '../src/plan.ts';

/** What BENCH_ONLY selects: run.ts starts the parts of the bench these flags name. */
describe('benchPlan (BENCH_ONLY)', () => {
  it('runs every figure by default: the maxima alternate with the DB limit, GraphQL reads the cards it charged', () => {
    expect(benchPlan(undefined)).toEqual({
      db: true,
      graphql: true,
      rest: true,
      reads: true,
      readsChargeOwnCards: false,
      dbAlternates: true,
      stack: true,
      federation: true,
      full: true,
    });
  });

  it('reads: the card reads and the DB limit their ratio is to, alone, without any charge run', () => {
    expect(benchPlan('reads')).toEqual({
      db: true,
      graphql: false,
      rest: false,
      reads: true,
      readsChargeOwnCards: true,
      dbAlternates: false,
      stack: true,
      federation: false,
      full: false,
    });
  });

  it('reads beside graphql is the full run’s reads (of the cards the GraphQL maximum charged)', () => {
    expect(benchPlan('graphql,reads')).toMatchObject({ graphql: true, reads: true, readsChargeOwnCards: false, db: true });
    expect(benchPlan('graphql')).toMatchObject({ graphql: true, reads: true, readsChargeOwnCards: false, db: false });
  });

  it('reads beside rest: REST alternates alone (no DB limit named with it), the reads charge their own cards', () => {
    expect(benchPlan(' rest , reads ')).toMatchObject({ rest: true, reads: true, readsChargeOwnCards: true, db: true, dbAlternates: true });
  });

  it('keeps the existing selections: db alone needs no stack, federation alone no database', () => {
    expect(benchPlan('db')).toMatchObject({ db: true, dbAlternates: false, stack: false, reads: false, federation: false });
    expect(benchPlan('federation')).toMatchObject({ db: false, stack: false, reads: false, federation: true });
    expect(benchPlan('db,rest')).toMatchObject({ db: true, rest: true, dbAlternates: true, reads: false, graphql: false });
  });

  it('is the full run (the only kind that rewrites RESULTS.md) when it names every scenario of it, in any order', () => {
    expect(benchPlan('federation,rest,graphql,db').full).toBe(true);
    expect(benchPlan('db,graphql,rest,reads,federation').full).toBe(true);
    expect(benchPlan('db,graphql,rest').full).toBe(false);
    expect(benchPlan('reads').full).toBe(false);
  });

  it('refuses a name it does not know, or none, instead of measuring nothing over RESULTS.md', () => {
    expect(() => benchPlan('read')).toThrow(/unknown scenario read \(known: db, graphql, rest, reads, federation\)/);
    expect(() => benchPlan('db,fed')).toThrow(/unknown scenario fed/);
    expect(() => benchPlan('')).toThrow(/names no scenario/);
    expect(() => benchPlan(' , ')).toThrow(/names no scenario/);
  });
});
