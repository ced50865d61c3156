import { fileURLToPath } from 'node:url';
import { drizzle as drizzlePg } from 'drizzle-orm/node-postgres';
import { migrate as migratePg } from 'drizzle-orm/node-postgres/migrator';
import type { PgliteDatabase } from 'drizzle-orm/pglite';
import { migrate as migratePglite } from 'drizzle-orm/pglite/migrator';
import type { DatabaseHandle } from './client.ts';

export const migrationsFolder = fileURLToPath(new URL('../migrations', import.meta.url));

/** Arbitrary constant naming the advisory lock that serialises concurrent migrators. */
const migrationLockId = 727_431_001;

/**
 * Applies the committed drizzle-kit migrations. The same migration files run on PGlite and
 * on PostgreSQL; on PostgreSQL an advisory lock lets many replicas start at once safely.
 */
export async function migrate(handle: DatabaseHandle): Promise<void> {
  if (handle.kind === 'pglite') {
    await migratePglite(handle.db as unknown as PgliteDatabase, { migrationsFolder });
    return;
  }
  const pool = handle.pool;
  if (!pool) throw new Error('pg handle without a pool');
  // One connection does it all: it waits for the lock as long as another replica migrates, and
  // a migration step may take longer than any request should, so its session has no statement
  // timeout (the pool's applies to every other connection).
  const lockClient = await pool.connect();
  try {
    await lockClient.query('set statement_timeout = 0');
    await lockClient.query('select pg_advisory_lock($1)', [migrationLockId]);
    await migratePg(drizzlePg(lockClient), { migrationsFolder });
  } finally {
    await lockClient.query('select pg_advisory_unlock($1)', [migrationLockId]).catch(() => {});
    // Closed, not returned to the pool: no later query may run without the timeout. Closing
    // also drops the lock if the unlock above failed.
    lockClient.release(true);
  }
}
