import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { drizzle as drizzlePg } from 'drizzle-orm/node-postgres';
import { migrate as migratePg } from 'drizzle-orm/node-postgres/migrator';
import type { PgliteDatabase } from 'drizzle-orm/pglite';
import { migrate as migratePglite } from 'drizzle-orm/pglite/migrator';
import { type DatabaseHandle, withoutResponseTimeout } from './client.ts';
import { DEADLOCK_DETECTED, LOCK_NOT_AVAILABLE, pgErrorCode } from './pg-error.ts';

export const migrationsFolder = fileURLToPath(new URL('../migrations', import.meta.url));

/** Arbitrary constant naming the advisory lock that serialises concurrent migrators. */
const migrationLockId = 727_431_001;
/** Names the advisory lock of the replica validating constraints (the others skip it). */
const validationLockId = 727_431_002;
/** The schemas the migrations own; their NOT VALID constraints are validated after migrating. */
const ownedSchemas = ['auth', 'cards', 'charges'];

export interface MigrateOptions {
  /**
   * How long a migration statement may wait for a lock (pg only) before its attempt is rolled
   * back: a step such as `DROP INDEX` waiting behind a long transaction on a busy table would
   * otherwise queue every read and write of that table behind it for as long. @default 5000
   */
  lockTimeoutMs?: number;
  /** Attempts before the lock timeout (or a deadlock) is thrown (and the replica fails its start). @default 5 */
  attempts?: number;
  /** Wait before the second attempt, doubling after each. @default 1000 */
  retryDelayMs?: number;
  /** Another drizzle-kit migrations folder (tests: a database at an earlier migration). @default the committed one */
  migrationsFolder?: string;
  /**
   * Told when a constraint a migration added NOT VALID could not be validated (rows written before
   * it break it, or its table was busy): the constraint still checks every new and updated row, and
   * the next start tries again. @default process.emitWarning
   */
  onWarning?: (message: string) => void;
}

/**
 * Applies the committed drizzle-kit migrations, then validates the constraints they added
 * `NOT VALID`. The same migration files run on PGlite and on PostgreSQL; on PostgreSQL an
 * advisory lock lets many replicas start at once safely.
 */
export async function migrate(handle: DatabaseHandle, options: MigrateOptions = {}): Promise<void> {
  const folder = options.migrationsFolder ?? migrationsFolder;
  const warn = options.onWarning ?? ((message: string) => process.emitWarning(message, 'GhostPayMigrationWarning'));
  if (handle.kind === 'pglite') {
    const pglite = handle.pglite;
    if (!pglite) throw new Error('pglite handle without its client');
    await refuseSkippedMigrations(folder, (text) => pglite.query(text));
    await migratePglite(handle.db as unknown as PgliteDatabase, { migrationsFolder: folder });
    await validateConstraints((text) => pglite.query(text), warn);
    return;
  }
  const pool = handle.pool;
  if (!pool) throw new Error('pg handle without a pool');
  // One connection does it all: it waits for the advisory lock as long as another replica
  // migrates, and a migration step may take longer than any request should, so its session has
  // no statement timeout (the pool's applies to every other connection); its waits for table
  // locks are bounded by `lockTimeoutMs` instead.
  const lockClient = await pool.connect();
  withoutResponseTimeout(lockClient);
  try {
    await lockClient.query('set statement_timeout = 0');
    await lockClient.query('select pg_advisory_lock($1)', [migrationLockId]);
    try {
      // Set after the advisory lock, which may wait as long as another replica migrates. Each
      // attempt is one transaction (drizzle's), rolled back whole when a statement times out or
      // PostgreSQL ends it to break a deadlock with the services' transactions.
      const lockTimeoutMs = Math.max(1, Math.trunc(options.lockTimeoutMs ?? 5_000));
      await lockClient.query(`set lock_timeout = ${lockTimeoutMs}`);
      await refuseSkippedMigrations(folder, (text) => lockClient.query(text));
      const attempts = options.attempts ?? 5;
      for (let attempt = 1; ; attempt++) {
        try {
          await migratePg(drizzlePg(lockClient), { migrationsFolder: folder });
          break;
        } catch (error) {
          const code = pgErrorCode(error);
          if ((code !== LOCK_NOT_AVAILABLE && code !== DEADLOCK_DETECTED) || attempt >= attempts) throw error;
          await new Promise((resolve) => setTimeout(resolve, (options.retryDelayMs ?? 1_000) * 2 ** (attempt - 1)));
        }
      }
    } finally {
      await lockClient.query('select pg_advisory_unlock($1)', [migrationLockId]).catch(() => {});
    }
    // After the migration's commit, so no table stays locked while a constraint's rows are read.
    // One replica validates; the others, starting at the same time, need not wait for its scans.
    const { rows } = await lockClient.query<{ locked: boolean }>('select pg_try_advisory_lock($1) as locked', [validationLockId]);
    if (rows[0]?.locked) {
      try {
        await validateConstraints((text) => lockClient.query(text), warn);
      } finally {
        await lockClient.query('select pg_advisory_unlock($1)', [validationLockId]).catch(() => {});
      }
    }
  } finally {
    // Closed, not returned to the pool: no later query may run without the timeout. Closing
    // also drops the locks if an unlock above failed.
    lockClient.release(true);
  }
}

/**
 * Throws for a migration that drizzle's migrator would skip for ever: it applies only the
 * migrations whose journal `when` is after the last applied one's, so a migration not applied
 * yet whose `when` is earlier (generated on a branch, or on a machine whose clock was behind,
 * and merged after a later one was released) would be passed over silently on every database
 * that has the later one, while new databases get it: two schemas from one code base.
 */
async function refuseSkippedMigrations(folder: string, run: (text: string) => Promise<{ rows: unknown[] }>): Promise<void> {
  const { rows: present } = await run(`select to_regclass('drizzle.__drizzle_migrations') is not null as present`);
  if (!(present[0] as { present?: boolean } | undefined)?.present) return;
  const { rows } = await run('select created_at from drizzle.__drizzle_migrations');
  const applied = new Set((rows as { created_at: string | number }[]).map((row) => Number(row.created_at)));
  if (applied.size === 0) return;
  const last = Math.max(...applied);
  const journal = JSON.parse(readFileSync(join(folder, 'meta/_journal.json'), 'utf8')) as { entries: { tag: string; when: number }[] };
  const skipped = journal.entries.filter((entry) => entry.when <= last && !applied.has(entry.when)).map((entry) => entry.tag);
  if (skipped.length > 0) {
    throw new Error(
      `migration ${skipped.join(', ')} was never applied, but a later one was: drizzle's migrator would skip it. ` +
        'Give it a "when" after the last released migration\'s in meta/_journal.json (db/README.md, "Migrations")',
    );
  }
}

/**
 * Validates every constraint of the owned schemas that is still NOT VALID, each by its own
 * `ALTER TABLE … VALIDATE CONSTRAINT` (its own transaction). That takes SHARE UPDATE EXCLUSIVE on
 * the table, which lets reads and writes go on while it scans (the `ADD CONSTRAINT … NOT VALID`
 * in the migration held ACCESS EXCLUSIVE only for a catalog change). A constraint that rows break
 * stays NOT VALID, still enforced on new and updated rows, and is reported to `warn`.
 */
async function validateConstraints(run: (text: string) => Promise<{ rows: unknown[] }>, warn: (message: string) => void): Promise<void> {
  const schemas = ownedSchemas.map((schema) => `'${schema}'`).join(', ');
  const { rows } = await run(`
    select n.nspname || '.' || c.relname as "table", con.conname as "constraint",
      format('alter table %I.%I validate constraint %I', n.nspname, c.relname, con.conname) as statement
    from pg_constraint con
    join pg_class c on c.oid = con.conrelid
    join pg_namespace n on n.oid = c.relnamespace
    where not con.convalidated and n.nspname in (${schemas})
    order by 1, 2`);
  for (const row of rows as { table: string; constraint: string; statement: string }[]) {
    try {
      await run(row.statement);
    } catch (error) {
      warn(
        `constraint ${row.constraint} on ${row.table} stays NOT VALID (${(error as Error).message}); it still checks every new ` +
          'and updated row, and the next start validates it again (db/README.md, "Invariants")',
      );
    }
  }
}
