import { randomBytes } from 'node:crypto';
import '@ghostpay/test-support';
import pg from 'pg';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { createDatabase, type DatabaseHandle, migrate } from '../src/index.ts';

const adminUrl = inject('postgresAdminUrl');
/** The advisory lock `migrate` serialises replicas with (a constant in migrate.ts). */
const migrationLockId = 727_431_001;
const statementTimeoutMs = 300;
const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms));

/** An empty database (nothing migrated yet), dropped after the test. */
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function emptyDatabase(): Promise<{ url: string; handle: DatabaseHandle }> {
  const name = `migrate_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`create database ${name}`).finally(() => admin.end());
  const url = adminUrl.replace(/\/[^/]*$/, `/${name}`);
  const handle = await createDatabase({ url, statementTimeoutMs, poolSize: 3 });
  cleanups.push(async () => {
    await handle.close();
    const drop = new pg.Client({ connectionString: adminUrl });
    await drop.connect();
    await drop.query(`drop database if exists ${name} with (force)`).finally(() => drop.end());
  });
  return { url, handle };
}

async function connected(url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  cleanups.push(() => client.end().catch(() => {}));
  return client;
}

/** 'done' when `migrate` resolves, else what it rejected with; 'pending' while it runs. */
function track(running: Promise<void>) {
  const state: { outcome: unknown } = { outcome: 'pending' };
  const settled = running.then(
    () => {
      state.outcome = 'done';
    },
    (error: unknown) => {
      state.outcome = error;
    },
  );
  return Object.assign(state, { settled });
}

async function expectMigratedWithTimeoutKept(handle: DatabaseHandle) {
  const pool = handle.pool as pg.Pool;
  const { rows } = await pool.query<{ applied: number }>('select count(*)::int as applied from drizzle.__drizzle_migrations');
  expect(rows[0]?.applied).toBeGreaterThan(0);
  expect((await pool.query("select to_regclass('charges.charges') as t")).rows[0]?.t).toBe('charges.charges');
  // Every connection the pool hands out still has the statement timeout.
  const clients = await Promise.all([pool.connect(), pool.connect(), pool.connect()]);
  try {
    for (const client of clients) {
      expect((await client.query('show statement_timeout')).rows[0]?.statement_timeout).toBe(`${statementTimeoutMs}ms`);
    }
  } finally {
    for (const client of clients) client.release();
  }
}

describe.skipIf(!adminUrl)('migrate on PostgreSQL, beyond the pool statement timeout', () => {
  it('waits for another migrator holding the lock longer than the statement timeout, then migrates', async () => {
    const { url, handle } = await emptyDatabase();
    const other = await connected(url);
    await other.query('select pg_advisory_lock($1)', [migrationLockId]);

    const migrating = track(migrate(handle));
    await sleep(statementTimeoutMs * 4);
    expect(migrating.outcome).toBe('pending');

    await other.query('select pg_advisory_unlock($1)', [migrationLockId]);
    await migrating.settled;
    expect(migrating.outcome).toBe('done');
    await expectMigratedWithTimeoutKept(handle);
  });

  it('completes a migration statement that runs longer than the statement timeout', async () => {
    const { url, handle } = await emptyDatabase();
    // The first migration starts with `CREATE SCHEMA "auth"`; it waits while another
    // transaction holds the name, as a long step would keep it busy.
    const other = await connected(url);
    await other.query('begin');
    await other.query('create schema auth');

    const migrating = track(migrate(handle));
    await sleep(statementTimeoutMs * 4);
    expect(migrating.outcome).toBe('pending');

    await other.query('rollback');
    await migrating.settled;
    expect(migrating.outcome).toBe('done');
    await expectMigratedWithTimeoutKept(handle);
  });

  it('gives up a step that waits on a table lock past lockTimeoutMs, rolls it back, and retries it', async () => {
    const { url, handle } = await emptyDatabase();
    const other = await connected(url);
    await other.query('begin');
    await other.query('create schema auth');

    // One attempt: the blocked step fails with the lock timeout (55P03) while the other
    // transaction still holds the name (it ends only below), instead of waiting (and queueing
    // everything else behind it) for as long as that transaction lasts.
    const once = track(migrate(handle, { lockTimeoutMs: 200, attempts: 1 }));
    await once.settled;
    expect((once.outcome as { cause?: { code?: string } }).cause?.code ?? (once.outcome as { code?: string }).code).toBe('55P03');
    // Rolled back whole: nothing of the first migration was kept.
    const pool = handle.pool as pg.Pool;
    expect((await pool.query("select to_regclass('cards.cards') as t")).rows[0]?.t).toBeNull();

    // With retries it gets through once the other transaction ends.
    const retrying = track(migrate(handle, { lockTimeoutMs: 200, attempts: 20, retryDelayMs: 50 }));
    await sleep(800);
    expect(retrying.outcome).toBe('pending');
    await other.query('rollback');
    await retrying.settled;
    expect(retrying.outcome).toBe('done');
    await expectMigratedWithTimeoutKept(handle);
  });
});
