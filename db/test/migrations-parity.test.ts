import { createDatabase, type DatabaseHandle, migrate } from '@ghostpay/db';
import { freshDatabase } from '@ghostpay/test-support';
import { sql } from 'drizzle-orm';
import { afterAll, describe, expect, inject, it } from 'vitest';

/** Everything that makes up the schema, read from the catalog in a stable order. */
async function describeSchema(handle: DatabaseHandle) {
  const rows = async (query: ReturnType<typeof sql>) => ((await handle.db.execute(query)) as unknown as { rows: unknown[] }).rows;
  const schemas = sql`('auth', 'cards', 'charges')`;
  return {
    columns: await rows(sql`
      select table_schema, table_name, column_name, data_type, character_maximum_length, is_nullable, column_default
      from information_schema.columns where table_schema in ${schemas}
      order by table_schema, table_name, column_name`),
    constraints: await rows(sql`
      select n.nspname as schema, c.conrelid::regclass::text as table_name, c.conname, c.contype, c.convalidated, c.condeferrable, c.condeferred,
        pg_get_constraintdef(c.oid) as definition
      from pg_constraint c join pg_namespace n on n.oid = c.connamespace
      -- PGlite embeds PostgreSQL 17+, which also lists NOT NULL as constraints (contype 'n');
      -- nullability is compared through information_schema.columns instead.
      where n.nspname in ${schemas} and c.contype <> 'n' order by 1, 2, 3`),
    indexes: await rows(sql`
      select schemaname, tablename, indexname, indexdef from pg_indexes
      where schemaname in ${schemas} order by 1, 2, 3`),
    triggers: await rows(sql`
      select c.relnamespace::regnamespace::text as schema, c.relname as table_name, t.tgname, pg_get_triggerdef(t.oid) as definition
      from pg_trigger t join pg_class c on c.oid = t.tgrelid
      where not t.tgisinternal and c.relnamespace::regnamespace::text in ${schemas} order by 1, 2, 3`),
    functions: await rows(sql`
      select p.pronamespace::regnamespace::text as schema, p.proname, pg_get_function_identity_arguments(p.oid) as arguments, p.prosrc
      from pg_proc p where p.pronamespace::regnamespace::text in ${schemas} order by 1, 2, 3`),
  };
}

describe('migrations', () => {
  const handles: DatabaseHandle[] = [];
  afterAll(async () => {
    await Promise.all(handles.map((h) => h.close()));
  });

  it.skipIf(!inject('postgresAdminUrl'))(
    'produce the same tables, columns, types, constraints and indexes on PGlite and PostgreSQL',
    async () => {
      const postgres = await freshDatabase();
      const pglite = await createDatabase();
      handles.push(postgres, pglite);
      await migrate(pglite);
      const [onPostgres, onPglite] = await Promise.all([describeSchema(postgres), describeSchema(pglite)]);
      expect(onPostgres.columns.length).toBeGreaterThan(50);
      expect(onPostgres.indexes.length).toBeGreaterThan(15);
      expect(onPostgres.triggers.length).toBeGreaterThan(4);
      // Every constraint a migration added NOT VALID has been validated by `migrate`.
      expect(onPostgres.constraints.filter((c) => !(c as { convalidated: boolean }).convalidated)).toEqual([]);
      expect(onPglite).toEqual(onPostgres);
    },
  );

  it('are idempotent: migrating twice changes nothing', async () => {
    const database = await freshDatabase();
    handles.push(database);
    const before = await describeSchema(database);
    await migrate(database);
    expect(await describeSchema(database)).toEqual(before);
  });
});
