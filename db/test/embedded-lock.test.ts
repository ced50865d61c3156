/**
 * PGlite is PostgreSQL in one process: a second process opening the same data directory (a CLI,
 * a standalone service, a second `npm start`) keeps its own buffers and WAL position and
 * corrupts the files. `createDatabase` locks the directory while a handle is open and refuses a
 * second opener with a message saying what to do.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { exitedPid, type LockHolder, spawnLockHolder } from '@ghostpay/test-support';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { createDatabase, type DatabaseHandle, EmbeddedDatabaseInUseError } from '../src/index.ts';

const root = mkdtempSync(join(tmpdir(), 'ghostpay-embedded-lock-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const open: DatabaseHandle[] = [];
const holders: LockHolder[] = [];
afterEach(async () => {
  for (const handle of open.splice(0)) await handle.close();
  await Promise.all(holders.splice(0).map((holder) => holder.kill()));
});
const openAt = async (dataDir: string) => {
  const handle = await createDatabase({ dataDir });
  open.push(handle);
  return handle;
};
let n = 0;
const freshDir = () => join(root, `pglite-${++n}`);

/** A second process that opens the embedded database at `dataDir`, writes a row and holds it until killed. */
async function otherProcessHolding(dataDir: string): Promise<LockHolder> {
  const holder = await spawnLockHolder({
    kind: 'embedded-database',
    dataDir,
    statements: ['create table if not exists t (v int)', 'insert into t values (1)'],
  });
  holders.push(holder);
  return holder;
}

describe('one process per embedded data directory', () => {
  it('refuses a second handle on the same directory in this process, and opens it again once the first is closed', async () => {
    const dataDir = freshDir();
    const first = await openAt(dataDir);
    await first.pglite!.query('create table t (v int)');
    const refused = await createDatabase({ dataDir }).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(refused).toBeInstanceOf(EmbeddedDatabaseInUseError);
    expect((refused as Error).message).toMatch(/allows one process per data directory/);
    expect((refused as EmbeddedDatabaseInUseError).pid).toBe(process.pid);
    await open.pop()!.close();
    expect(existsSync(`${dataDir}.lock`)).toBe(false);
    const again = await openAt(dataDir);
    expect((await again.pglite!.query('select count(*)::int as n from t')).rows).toEqual([{ n: 0 }]);
  });

  it('refuses a directory another running process has open, naming it, and takes it over once that process is gone', async () => {
    const dataDir = freshDir();
    const holder = await otherProcessHolding(dataDir);
    const refused = await createDatabase({ dataDir }).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(refused).toBeInstanceOf(EmbeddedDatabaseInUseError);
    expect((refused as Error).message).toContain(`(${holder.pid})`);
    expect((refused as Error).message).toContain(`delete ${dataDir}.lock`);
    // Killed without a chance to remove its lock (a crash): the lock is stale, and is taken over.
    await holder.kill();
    expect(existsSync(`${dataDir}.lock`)).toBe(true);
    const mine = await openAt(dataDir);
    expect((await mine.pglite!.query('select v from t')).rows).toEqual([{ v: 1 }]);
  });

  it('takes over a lock naming a process that no longer runs', async () => {
    const dataDir = freshDir();
    writeFileSync(`${dataDir}.lock`, `${await exitedPid()}\n`);
    const handle = await openAt(dataDir);
    await handle.ping();
  });

  it('locks nothing for an in-memory database', async () => {
    const [a, b] = [await createDatabase(), await createDatabase()];
    open.push(a, b);
    await a.ping();
    await b.ping();
  });
});

describe('what the lock costs an importer of db', () => {
  it('opens, locks and closes an embedded database loading the lock alone, not platform (Apollo, OpenTelemetry, pino, prom-client)', () => {
    const dataDir = freshDir();
    // An importer of db (a CLI, the test global setup), in a process of its own: every package it resolves is noted.
    const script = `
      const { registerHooks } = await import('node:module');
      const resolved = new Set();
      registerHooks({ resolve(specifier, context, next) { resolved.add(specifier); return next(specifier, context); } });
      const { createDatabase } = await import(${JSON.stringify(fileURLToPath(new URL('../src/index.ts', import.meta.url)))});
      const handle = await createDatabase({ dataDir: ${JSON.stringify(dataDir)} });
      await handle.ping();
      await handle.close();
      process.stdout.write(JSON.stringify([...resolved]));`;
    const resolved = JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' })) as string[];
    expect(
      resolved.filter(
        (specifier) =>
          /^(@ghostpay\/platform|@apollo\/|@opentelemetry\/|pino|prom-client)(\/|$)/.test(specifier) &&
          specifier !== '@ghostpay/platform/process-lock',
      ),
    ).toEqual([]);
    // Not vacuous: the hook saw db's own imports, the lock's module among them.
    expect(resolved).toContain('@ghostpay/platform/process-lock');
    expect(existsSync(`${dataDir}.lock`)).toBe(false);
  });
});
