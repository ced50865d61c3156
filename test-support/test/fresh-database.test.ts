/**
 * freshDatabase: every test file gets its own migrated database, and close() drops it. Two files
 * sharing one would see each other's rows and pass or fail by the order they ran in.
 */
import pg from 'pg';
import { describe, expect, inject, it } from 'vitest';
import { freshDatabase } from '../src/fresh-database.ts';
import { createSeed } from '../src/seed.ts';

describe.skipIf(!inject('postgresAdminUrl'))('freshDatabase on PostgreSQL', () => {
  it('gives each caller its own migrated database, even when asked at the same time', async () => {
    const databases = await Promise.all([freshDatabase(), freshDatabase(), freshDatabase()]);
    try {
      expect(new Set(databases.map((database) => database.url)).size).toBe(3);
      const [first, second] = databases;
      for (const database of databases) {
        // Migrated: the schema is there, and empty.
        expect((await database.pool!.query('select count(*)::int as n from cards.cards')).rows[0]).toEqual({ n: 0 });
      }
      await first.pool!.query('create table only_in_first (id int)');
      const user = await createSeed(first.db).user('merchant');
      expect((await second.pool!.query("select to_regclass('only_in_first') as t")).rows[0]).toEqual({ t: null });
      expect((await first.pool!.query('select count(*)::int as n from auth.users where id = $1', [user.id])).rows[0]).toEqual({ n: 1 });
      expect((await second.pool!.query('select count(*)::int as n from auth.users where id = $1', [user.id])).rows[0]).toEqual({ n: 0 });
    } finally {
      await Promise.all(databases.map((database) => database.close()));
    }
  });

  it('drops the database on close()', async () => {
    const database = await freshDatabase();
    const name = new URL(database.url).pathname.slice(1);
    await database.close();
    const admin = new pg.Client({ connectionString: inject('postgresAdminUrl') });
    await admin.connect();
    try {
      expect((await admin.query('select 1 from pg_database where datname = $1', [name])).rowCount).toBe(0);
    } finally {
      await admin.end();
    }
  });
});
