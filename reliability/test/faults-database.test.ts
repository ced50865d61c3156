import { createDatabase, type DatabaseHandle } from '@ghostpay/db';
import { type PostgresCluster, startPostgresCluster } from '@ghostpay/test-support';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Cluster, createParty, type Party, startCluster } from '../src/cluster.ts';
import { recordScenario } from '../src/results.ts';
import { chargeEveryCard, convergenceProblems, createTestSigningKey, issueCards, ledgerViolations, sleep } from '../src/suite-fixture.ts';

// A dedicated PostgreSQL cluster: these scenarios crash it and kill its backends, which must
// not disturb the run's shared cluster.
let postgres: PostgresCluster;
let databaseUrl: string;
let database: DatabaseHandle;
let cluster: Cluster;
let merchant: Party;
let owner: Party;

beforeAll(async () => {
  postgres = await startPostgresCluster({ maxConnections: 200 });
  const admin = new pg.Client({ connectionString: postgres.url });
  await admin.connect();
  await admin.query('create database ghostpay');
  await admin.end();
  databaseUrl = postgres.urlFor('ghostpay');
  const key = await createTestSigningKey();
  // The services migrate the empty database at start (auth first, then the others).
  cluster = await startCluster({ databaseUrl, testJwk: key.publicJwk, services: ['auth', 'cards', 'charges', 'router'] });
  database = await createDatabase({ url: databaseUrl, poolSize: 2 });
  merchant = await createParty(database, cluster.graphqlUrl, 'merchant', 'db-fault-merchant');
  owner = await createParty(database, cluster.graphqlUrl, 'user', 'db-fault-owner');
});

afterAll(async () => {
  await cluster?.close();
  await database?.close().catch(() => {});
  await postgres?.destroy();
});

/** The ledger check on a fresh connection (the suite's pool may hold connections the crash broke). */
async function freshLedgerCheck() {
  const handle = await createDatabase({ url: databaseUrl, poolSize: 1 });
  try {
    return await ledgerViolations(handle);
  } finally {
    await handle.close();
  }
}

describe('database faults under charge load', () => {
  it('loses no acknowledged charge and converges every key to one charge when PostgreSQL crashes and restarts', async () => {
    const started = performance.now();
    const cards = await issueCards(cluster.graphqlUrl, merchant, owner.userId, 160);
    const load = chargeEveryCard(cluster.graphqlUrl, merchant, cards, {
      concurrency: 8,
      retryForMs: 45_000,
      keyPrefix: 'pg-crash',
      pauseMs: 150,
      overallDeadlineMs: 60_000,
    });
    await sleep(1_000);
    // Crash (no shutdown checkpoint, like a killed server), stay down, come back.
    await postgres.stop('immediate');
    await sleep(2_000);
    await postgres.start();
    const result = await load;
    const problems = await convergenceProblems(databaseUrl, cards, result.acknowledged);
    const violations = await freshLedgerCheck();
    recordScenario({
      id: 'faults/postgres-crash',
      title: 'PostgreSQL `pg_ctl stop -m immediate` for 2 s mid-load, restarted; clients retry with the same idempotency keys',
      requests: result.attempts,
      faults: 1,
      failures: result.unconverged.length + result.mismatches.length + problems.length,
      invariantViolations: violations.length,
      notes: `${cards.length} cards charged, ${result.failedAttempts} requests failed during the outage and were retried (${[...result.failureCodes].map(([c, n]) => `${c}×${n}`).join(', ') || 'none'})`,
      durationMs: Math.round(performance.now() - started),
    });
    expect(result.failedAttempts, 'the crash happened while charges were flowing').toBeGreaterThan(0);
    expect(result.unconverged).toEqual([]);
    expect(result.mismatches).toEqual([]);
    expect(result.acknowledged.size).toBe(cards.length);
    expect(problems).toEqual([]);
    expect(violations).toEqual([]);
  });

  it('converges when the charges service’s backends are terminated mid-transaction', async () => {
    const started = performance.now();
    const cards = await issueCards(cluster.graphqlUrl, merchant, owner.userId, 120);
    let done = false;
    let terminated = 0;
    const killer = (async () => {
      const admin = new pg.Client({ connectionString: postgres.url });
      await admin.connect();
      try {
        // Bounded: at most 60 rounds, and only while the load runs.
        for (let round = 0; round < 60 && !done; round++) {
          const { rowCount } = await admin.query(
            "select pg_terminate_backend(pid) from pg_stat_activity where datname = 'ghostpay' and application_name = 'ghostpay-charges' and state in ('active', 'idle in transaction')",
          );
          terminated += rowCount ?? 0;
          await sleep(100);
        }
      } finally {
        await admin.end();
      }
    })();
    const result = await chargeEveryCard(cluster.graphqlUrl, merchant, cards, {
      concurrency: 8,
      retryForMs: 20_000,
      keyPrefix: 'pg-terminate',
      pauseMs: 30,
      overallDeadlineMs: 60_000,
    });
    done = true;
    await killer;
    const problems = await convergenceProblems(databaseUrl, cards, result.acknowledged);
    const violations = await freshLedgerCheck();
    recordScenario({
      id: 'faults/backend-terminated',
      title: '`pg_terminate_backend` on the charges service’s active backends every 100 ms during load',
      requests: result.attempts,
      faults: terminated,
      failures: result.unconverged.length + result.mismatches.length + problems.length,
      invariantViolations: violations.length,
      notes: `${cards.length} cards charged, ${result.failedAttempts} requests failed with a terminated backend and were retried`,
      durationMs: Math.round(performance.now() - started),
    });
    expect(terminated, 'backends were terminated mid-charge').toBeGreaterThan(0);
    expect(
      result.unconverged.length,
      `${[...result.failureCodes].join(' ')}\n${cluster.services.charges.logs
        .filter((l) => !l.includes('"level":30'))
        .slice(0, 40)
        .join('\n')}`,
    ).toBe(0);
    expect(result.unconverged).toEqual([]);
    expect(result.mismatches).toEqual([]);
    expect(problems).toEqual([]);
    expect(violations).toEqual([]);
  });
});
