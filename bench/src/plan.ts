/**
 * What a bench run measures, from `BENCH_ONLY` (a comma list of scenario names). Kept apart
 * from run.ts, which starts measuring when imported, so the selection has its own tests.
 */

/** The names `BENCH_ONLY` accepts. */
export const benchScenarioNames = ['db', 'graphql', 'rest', 'reads', 'federation'] as const;
export type BenchScenarioName = (typeof benchScenarioNames)[number];

/** Every figure of the full run; `reads` is in it through `graphql`, which reads the cards it charged. */
export const defaultBenchOnly = 'db,graphql,rest,federation';

export interface BenchPlan {
  /** The DB limit (`authorizeCharge` through a pg pool): the base of every charge and read ratio. */
  db: boolean;
  /** GraphQL createCharge: the maximum, the 70% run and the one-process run. */
  graphql: boolean;
  /** REST POST /charges: the maximum and the 70% run. */
  rest: boolean;
  /** GraphQL card(id) reads through the router. */
  reads: boolean;
  /**
   * The reads' cards are charged by an unmeasured pass through the router, not by the GraphQL
   * maximum (which is not run): `reads` named without `graphql`.
   */
  readsChargeOwnCards: boolean;
  /** The DB limit alternates with the GraphQL/REST maxima (on their stack) rather than running alone first. */
  dbAlternates: boolean;
  /** A GhostPay stack (and so PostgreSQL and redis-server) is started. */
  stack: boolean;
  federation: boolean;
  /**
   * Every scenario of the full run is named: only such a run rewrites RESULTS.md's table (a
   * partial run prints its table and leaves the full run's figures in place).
   */
  full: boolean;
}

/**
 * The plan for a `BENCH_ONLY` value (unset: the full run). `reads` runs the card reads without
 * the charge runs, and the DB limit with them: the reads row's ratio is to the DB limit, as in
 * the full run. A name outside {@link benchScenarioNames}, or none at all, is refused rather
 * than measuring nothing (and writing an empty table over RESULTS.md's).
 */
export function benchPlan(only: string | undefined = process.env.BENCH_ONLY): BenchPlan {
  const names = (only ?? defaultBenchOnly)
    .split(',')
    .map((name) => name.trim())
    .filter(Boolean);
  const unknown = names.filter((name) => !(benchScenarioNames as readonly string[]).includes(name));
  if (unknown.length > 0) {
    throw new Error(`BENCH_ONLY: unknown scenario ${unknown.join(', ')} (known: ${benchScenarioNames.join(', ')})`);
  }
  if (names.length === 0) throw new Error(`BENCH_ONLY names no scenario (known: ${benchScenarioNames.join(', ')})`);
  const named = new Set(names);
  const graphql = named.has('graphql');
  const rest = named.has('rest');
  const reads = graphql || named.has('reads');
  const db = named.has('db') || named.has('reads');
  return {
    db,
    graphql,
    rest,
    reads,
    readsChargeOwnCards: reads && !graphql,
    dbAlternates: db && (graphql || rest),
    stack: graphql || rest || reads,
    federation: named.has('federation'),
    full: defaultBenchOnly.split(',').every((name) => named.has(name)),
  };
}
