import { randomBytes } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freshDatabase } from '@ghostpay/test-support';
import pg from 'pg';
import { afterAll, afterEach, describe, expect, inject, it } from 'vitest';
import { createDatabase, type DatabaseHandle, migrate, migrationsFolder } from '../src/index.ts';

/**
 * `migrate` on a database that already has data, as in production: at migration 0001 (before
 * the money invariants of 0002), upgraded to the committed head.
 */
const adminUrl = inject('postgresAdminUrl');

/** The committed migrations up to and including `tag`, in a folder of their own. */
function migrationsUpTo(tag: string): string {
  const journal = JSON.parse(readFileSync(join(migrationsFolder, 'meta/_journal.json'), 'utf8')) as { entries: { tag: string }[] };
  const last = journal.entries.findIndex((entry) => entry.tag === tag);
  if (last < 0) throw new Error(`no migration ${tag}`);
  const folder = mkdtempSync(join(tmpdir(), 'ghostpay-migrations-'));
  mkdirSync(join(folder, 'meta'));
  const entries = journal.entries.slice(0, last + 1);
  for (const entry of entries) copyFileSync(join(migrationsFolder, `${entry.tag}.sql`), join(folder, `${entry.tag}.sql`));
  writeFileSync(join(folder, 'meta/_journal.json'), JSON.stringify({ ...journal, entries }));
  folders.push(folder);
  return folder;
}
const folders: string[] = [];
afterAll(() => {
  for (const folder of folders) rmSync(folder, { recursive: true, force: true });
});

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A new database migrated up to `tag` (0001 unless told), with a merchant and a card holder. */
async function databaseAt(
  tag = '0001_settlement_due_index',
): Promise<{ url: string; handle: DatabaseHandle; run: (text: string) => Promise<pg.QueryResult> }> {
  const name = `upgrade_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`create database ${name}`).finally(() => admin.end());
  const url = adminUrl.replace(/\/[^/]*$/, `/${name}`);
  const handle = await createDatabase({ url, poolSize: 3 });
  cleanups.push(async () => {
    await handle.close();
    const drop = new pg.Client({ connectionString: adminUrl });
    await drop.connect();
    await drop.query(`drop database if exists ${name} with (force)`).finally(() => drop.end());
  });
  await migrate(handle, { migrationsFolder: migrationsUpTo(tag) });
  const pool = handle.pool as pg.Pool;
  const run = (text: string) => pool.query(text);
  await run(`insert into auth.users (id, name, email, role) values
    ('usr_m', 'm', 'm@example.test', 'merchant'), ('usr_h', 'h', 'h@example.test', 'user')`);
  return { url, handle, run };
}

/** A card (USED as an authorization leaves it, 1,000 USD) and an AUTHORIZED charge of 100 on it, both named after `id`. */
const chargeSql = (id: string, columns = '', values = '') => `
  insert into cards.cards (id, owner_id, issuer_id, pan_ciphertext, pan_key_id, pan_fingerprint, bin, last4, brand,
    exp_month, exp_year, expires_at, amount, currency, status, used_at)
  values ('card_${id}', 'usr_h', 'usr_m', 'x', 'k', 'fp_${id}', '400000', '0000', 'VISA', 1, 2030, now() + interval '1 day', 1000, 'USD', 'USED', now());
  insert into charges.charges (id, card_id, merchant_id, amount, currency, status, authorized_at${columns})
  values ('ch_${id}', 'card_${id}', 'usr_m', 100, 'USD', 'AUTHORIZED', now()${values});`;

/** The CHECK constraints migrations 0002 and 0003 add NOT VALID. */
const invariants0002 = [
  'charge_events_status_check',
  'charge_idempotency_operation_check',
  'charge_idempotency_state_check',
  'charges_decline_code_values',
  'charges_refunded_matches_status',
  'charges_times_match_status',
];
const invariants0003 = [
  'cards_amount_max',
  'cards_used_at_matches_status',
  'charges_amount_max',
  'refunds_amount_max',
  'reveal_audit_actor_role_check',
];

async function constraintsNotValid(handle: DatabaseHandle): Promise<string[]> {
  const { rows } = await (handle.pool as pg.Pool).query<{ conname: string }>(`
    select con.conname from pg_constraint con join pg_namespace n on n.oid = con.connamespace
    where not con.convalidated and n.nspname in ('auth', 'cards', 'charges') order by 1`);
  return rows.map((row) => row.conname);
}

describe.skipIf(!adminUrl)('migrate, upgrading a database with data', () => {
  it('adds the new constraints NOT VALID and validates them once the migration has committed', async () => {
    const { handle, run } = await databaseAt();
    await run(chargeSql('ok'));
    const warnings: string[] = [];
    await migrate(handle, { onWarning: (message) => warnings.push(message) });
    expect(warnings).toEqual([]);
    expect(await constraintsNotValid(handle)).toEqual([]);
    const { rows } = await run(
      `select count(*)::int as n from pg_constraint where conname in (${[...invariants0002, ...invariants0003].map((name) => `'${name}'`).join(', ')}) and convalidated`,
    );
    expect(rows[0]?.n).toBe(invariants0002.length + invariants0003.length);
  });

  it('leaves a constraint that old rows break NOT VALID, still enforced on new rows, warns, and starts', async () => {
    const { handle, run } = await databaseAt();
    // Allowed before 0002: AUTHORIZED with a refunded amount.
    await run(chargeSql('bad', ', refunded_amount', ', 5'));
    const warnings: string[] = [];
    await migrate(handle, { onWarning: (message) => warnings.push(message) });
    expect(await constraintsNotValid(handle)).toEqual(['charges_refunded_matches_status']);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/^constraint charges_refunded_matches_status on charges\.charges stays NOT VALID \(check constraint/);
    // New rows are checked all the same.
    const refused = await run(chargeSql('new', ', refunded_amount', ', 5')).catch((error: { constraint?: string }) => error.constraint);
    expect(refused).toBe('charges_refunded_matches_status');
    // Once the row is repaired, the next start validates it.
    await run(`update charges.charges set refunded_amount = 0 where id = 'ch_bad'`);
    await migrate(handle, { onWarning: (message) => warnings.push(message) });
    expect(await constraintsNotValid(handle)).toEqual([]);
    expect(warnings).toHaveLength(1);
  });

  it('upgrading from 0002: leaves each of 0003’s constraints that old rows break NOT VALID, still enforced, warns, and validates it once repaired', async () => {
    const { handle, run } = await databaseAt('0002_money_invariants');
    // Allowed before 0003, one row breaking each of its rules: a USED card without used_at; a
    // card, a charge (amount and refunded amount) and a refund above 2^31 - 1; a reveal audited
    // under a role no principal has.
    await run(`
      insert into cards.cards (id, owner_id, issuer_id, pan_ciphertext, pan_key_id, pan_fingerprint, bin, last4, brand,
        exp_month, exp_year, expires_at, amount, currency, status, used_at)
      values ('card_unstamped', 'usr_h', 'usr_m', 'x', 'k', 'fp_unstamped', '400000', '0000', 'VISA', 1, 2030, now() + interval '1 day', 1000, 'USD', 'USED', null),
        ('card_huge', 'usr_h', 'usr_m', 'x', 'k', 'fp_huge', '400000', '0000', 'VISA', 1, 2030, now() + interval '1 day', 3000000000, 'USD', 'USED', now());
      insert into charges.charges (id, card_id, merchant_id, amount, currency, status, authorized_at, refunded_amount)
      values ('ch_huge', 'card_huge', 'usr_m', 3000000000, 'USD', 'REFUNDED', now(), 3000000000);
      insert into charges.refunds (id, charge_id, amount, created_by) values ('re_huge', 'ch_huge', 3000000000, 'usr_m');
      insert into cards.reveal_audit (id, card_id, actor_id, actor_role) values ('rev_odd', 'card_unstamped', 'usr_h', 'support');`);
    await run(chargeSql('fine'));
    const warnings: string[] = [];
    await migrate(handle, { onWarning: (message) => warnings.push(message) });
    expect(await constraintsNotValid(handle)).toEqual(invariants0003);
    expect(warnings.map((warning) => /^constraint (\S+) on (\S+) stays NOT VALID \(check constraint/.exec(warning)?.slice(1, 3))).toEqual([
      ['cards_amount_max', 'cards.cards'],
      ['cards_used_at_matches_status', 'cards.cards'],
      ['reveal_audit_actor_role_check', 'cards.reveal_audit'],
      ['charges_amount_max', 'charges.charges'],
      ['refunds_amount_max', 'charges.refunds'],
    ]);
    // New rows are checked all the same.
    const refused = (text: string) =>
      run(text).then(
        () => 'accepted',
        (error: { constraint?: string }) => error.constraint,
      );
    expect(await refused(`update cards.cards set used_at = null where id = 'card_fine'`)).toBe('cards_used_at_matches_status');
    expect(await refused(`update cards.cards set amount = 2147483648 where id = 'card_fine'`)).toBe('cards_amount_max');
    expect(
      await refused(`insert into cards.reveal_audit (id, card_id, actor_id, actor_role) values ('rev_new', 'card_fine', 'usr_h', 'root')`),
    ).toBe('reveal_audit_actor_role_check');
    // Once the rows are repaired, the next start validates every one.
    await run(`
      update cards.cards set used_at = now() where id = 'card_unstamped';
      update cards.reveal_audit set actor_role = 'user' where id = 'rev_odd';
      delete from charges.refunds where id = 're_huge';
      delete from charges.charges where id = 'ch_huge';
      delete from cards.cards where id = 'card_huge';`);
    await migrate(handle, { onWarning: (message) => warnings.push(message) });
    expect(await constraintsNotValid(handle)).toEqual([]);
    expect(warnings).toHaveLength(5);
  });

  it('upgrading from 0004 with cards_expiry_due_idx built by hand as the README says: 0005 keeps it, the index a fresh migration builds', async () => {
    const readme = readFileSync(join(migrationsFolder, '../README.md'), 'utf8');
    const byHand = /create index concurrently if not exists cards_expiry_due_idx[^;]*;/.exec(readme)?.[0];
    if (!byHand) throw new Error('db/README.md shows no concurrent build of cards_expiry_due_idx');
    const indexesOf = async (run: (text: string) => Promise<pg.QueryResult>) =>
      (
        await run(`select indexdef, indisvalid from pg_indexes join pg_index on indexrelid = format('%I.%I', schemaname, indexname)::regclass
          where schemaname = 'cards' and tablename = 'cards' and indexname = 'cards_expiry_due_idx'`)
      ).rows;
    const { handle, run } = await databaseAt('0004_pan_retention_reveal_outcome');
    await run(chargeSql('used'));
    // Outside any transaction, as on a live table (CONCURRENTLY refuses to run in one).
    await run(byHand);
    await migrate(handle);
    const migrated = await databaseAt('0005_expiry_due_index');
    const fresh = await indexesOf(migrated.run);
    expect(fresh).toHaveLength(1);
    expect(fresh[0]?.indisvalid).toBe(true);
    expect(await indexesOf(run)).toEqual(fresh);
  });

  it('retries an attempt PostgreSQL ended to break a deadlock with a service transaction', async () => {
    const { url, handle, run } = await databaseAt();
    await run(chargeSql('dl'));
    // A service transaction holding one table the migration locks (events), which then reads
    // another it has already locked (charges). It waits the longest before checking for a
    // deadlock, so the migration's attempt is the one PostgreSQL ends.
    const service = new pg.Client({ connectionString: url });
    await service.connect();
    cleanups.push(() => service.end().catch(() => {}));
    await service.query(`set deadlock_timeout = '10s'`);
    await service.query('begin');
    await service.query('lock table charges.charge_events in row exclusive mode');

    const outcome: { value: unknown } = { value: 'pending' };
    const migrating = migrate(handle, { lockTimeoutMs: 20_000, retryDelayMs: 50 }).then(
      () => {
        outcome.value = 'done';
      },
      (error: unknown) => {
        outcome.value = error;
      },
    );
    // The migration holds charges and waits for charge_events.
    for (const deadline = Date.now() + 10_000; ; ) {
      if (Date.now() > deadline || outcome.value !== 'pending')
        throw new Error(`the migration never waited for charge_events: ${outcome.value}`);
      const { rows } = await run(
        `select exists (select 1 from pg_locks where relation = 'charges.charge_events'::regclass and not granted) as waiting`,
      );
      if (rows[0]?.waiting) break;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    // Now the service reads charges: a deadlock, which PostgreSQL breaks after deadlock_timeout (1 s).
    await service.query('select count(*) from charges.charges');
    await service.query('commit');
    await migrating;
    expect(outcome.value).toBe('done');
    expect(await constraintsNotValid(handle)).toEqual([]);
  });
});

it('refuses a migration drizzle would skip: not applied, and older than one that was (a branch merged late)', async () => {
  // PostgreSQL or, without the cluster, PGlite: both migrated to the committed head.
  const database = await freshDatabase({ poolSize: 2 });
  cleanups.push(() => database.close());
  const folder = migrationsUpTo('0002_money_invariants');
  const journalFile = join(folder, 'meta/_journal.json');
  const journal = JSON.parse(readFileSync(journalFile, 'utf8')) as { entries: { idx: number; tag: string; when: number }[] };
  const [, previous] = journal.entries.slice(-2);
  // Generated before 0002 was released, merged after it.
  const late = { idx: journal.entries.length, version: '7', when: (previous?.when ?? 0) - 1, tag: '0003_late_branch', breakpoints: true };
  writeFileSync(join(folder, `${late.tag}.sql`), 'CREATE TABLE "charges"."late_branch" ("id" integer);');
  writeFileSync(journalFile, JSON.stringify({ ...journal, entries: [...journal.entries, late] }));

  const outcome = await migrate(database, { migrationsFolder: folder }).then(
    () => 'migrated',
    (error: Error) => error.message,
  );
  expect(outcome).toMatch(/^migration 0003_late_branch was never applied, but a later one was/);
  // The same database, migrated from the committed folder again, is fine.
  await migrate(database);
});
