import { randomBytes } from 'node:crypto';
import { createDatabase, type DatabaseHandle, migrate } from '@ghostpay/db';
import pg from 'pg';
import { inject } from 'vitest';
import './provided-context.ts';

export interface TestDatabase extends DatabaseHandle {
  /** URL of this database; empty for PGlite. */
  readonly url: string;
}

/**
 * A fresh, migrated database for one test file: a clone of the run's migrated template on
 * the throwaway PostgreSQL cluster (or an in-memory PGlite when no cluster is available
 * outside CI). Dropped again by `close()`.
 */
export async function freshDatabase(options: { poolSize?: number } = {}): Promise<TestDatabase> {
  const adminUrl = inject('postgresAdminUrl');
  if (!adminUrl) {
    const handle = await createDatabase();
    await migrate(handle);
    return Object.assign(handle, { url: '' });
  }
  const name = `test_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    await admin.query(`create database ${name} template ${inject('postgresTemplate')}`);
  } finally {
    await admin.end();
  }
  const url = adminUrl.replace(/\/[^/]*$/, `/${name}`);
  const handle = await createDatabase({ url, poolSize: options.poolSize ?? 10 });
  const close = handle.close.bind(handle);
  return Object.assign(handle, {
    url,
    async close() {
      await close();
      const cleanup = new pg.Client({ connectionString: adminUrl });
      await cleanup.connect();
      try {
        await cleanup.query(`drop database if exists ${name} with (force)`);
      } finally {
        await cleanup.end();
      }
    },
  });
}

/** The run's redis URL, or '' when none (tests needing it use `describe.skipIf(!redisUrl())`). */
export function redisUrl(): string {
  return inject('redisUrl');
}
