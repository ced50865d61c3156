import { fileURLToPath } from 'node:url';
import { drizzle as drizzlePg } from 'drizzle-orm/node-postgres';
import { migrate as migratePg } from 'drizzle-orm/node-postgres/migrator';
import type { PgliteDatabase } from 'drizzle-orm/pglite';
import { migrate as migratePglite } from 'drizzle-orm/pglite/migrator';
import type { DatabaseHandle } from './client.ts';
import { LOCK_NOT_AVAILABLE, pgErrorCode } from './pg-error.ts';

export const migrationsFolder = fileURLToPath(new URL('../migrations', import.meta.url));

/** Arbitrary constant naming the advisory lock that serialises concurrent migrators. */
const migrationLockId = 727_431_001;

export interface MigrateOptions {
  /**
   * How long a migration statement may wait for a lock (pg only) before its attempt is rolled
   * back: a step such as `DROP INDEX` waiting behind a long transaction on a busy table would
   * otherwise queue every read and write of that table behind it for as long. @default 5000
   */
  lockTimeoutMs?: number;
  /** Attempts before the lock timeout is thrown (and the replica fails its start). @default 5 */
  attempts?: number;
  /** Wait before the second attempt, doubling after each. @default 1000 */
  retryDelayMs?: number;
}

/**
 * Applies the committed drizzle-kit migrations. The same migration files run on PGlite and
 * on PostgreSQL; on PostgreSQL an advisory lock lets many replicas start at once safely.
 */
export async function migrate(handle: DatabaseHandle, options: MigrateOptions = {}): Promise<void> {
  if (handle.kind === 'pglite') {
    await migratePglite(handle.db as unknown as PgliteDatabase, { migrationsFolder });
    return;
  }
  const pool = handle.pool;
  if (!pool) throw new Error('pg handle without a pool');
  // One connection does it all: it waits for the advisory lock as long as another replica
  // migrates, and a migration step may take longer than any request should, so its session has
  // no statement timeout (the pool's applies to every other connection); its waits for table
  // locks are bounded by `lockTimeoutMs` instead.
  const lockClient = await pool.connect();
  try {
    await lockClient.query('set statement_timeout = 0');
    await lockClient.query('select pg_advisory_lock($1)', [migrationLockId]);
    // Set after the advisory lock, which may wait as long as another replica migrates. Each
    // attempt is one transaction (drizzle's), rolled back whole when a statement times out.
    const lockTimeoutMs = Math.max(1, Math.trunc(options.lockTimeoutMs ?? 5_000));
    await lockClient.query(`set lock_timeout = ${lockTimeoutMs}`);
    const attempts = options.attempts ?? 5;
    for (let attempt = 1; ; attempt++) {
      try {
        await migratePg(drizzlePg(lockClient), { migrationsFolder });
        break;
      } catch (error) {
        if (pgErrorCode(error) !== LOCK_NOT_AVAILABLE || attempt >= attempts) throw error;
        await new Promise((resolve) => setTimeout(resolve, (options.retryDelayMs ?? 1_000) * 2 ** (attempt - 1)));
      }
    }
  } finally {
    await lockClient.query('select pg_advisory_unlock($1)', [migrationLockId]).catch(() => {});
    // Closed, not returned to the pool: no later query may run without the timeout. Closing
    // also drops the lock if the unlock above failed.
    lockClient.release(true);
  }
}
