/**
 * spawnLockHolder: another process that holds a lock (platform's process lock, db's embedded
 * database, or what a script takes) once it resolves, and leaves it behind, stale, once killed.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { createDatabase, EmbeddedDatabaseInUseError } from '@ghostpay/db';
import { acquireProcessLock, ProcessLockHeldError } from '@ghostpay/platform/process-lock';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { exitedPid, spawnLockHolder } from '../src/lock-holder.ts';

const root = mkdtempSync(join(tmpdir(), 'ghostpay-lock-holder-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const freshPath = (name: string) => join(root, `${name}-${++n}`);

const running = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw error;
  }
};

const refusal = (take: () => unknown) => {
  try {
    take();
  } catch (error) {
    return error;
  }
  throw new Error('not refused');
};

describe('spawnLockHolder', () => {
  it('holds a process lock once it resolves, and leaves it stale once killed', async () => {
    const path = freshPath('dir.lock');
    const holder = await spawnLockHolder({ kind: 'process-lock', path });
    expect(holder.pid).not.toBe(process.pid);
    expect(readFileSync(path, 'utf8')).toBe(`${holder.pid}\n`);
    expect(refusal(() => acquireProcessLock(path))).toBeInstanceOf(ProcessLockHeldError);
    expect(refusal(() => acquireProcessLock(path))).toMatchObject({ pid: holder.pid });

    await holder.kill();
    expect(running(holder.pid)).toBe(false);
    // A crash: the lock is left behind, naming the process that is gone, and is taken over.
    expect(readFileSync(path, 'utf8')).toBe(`${holder.pid}\n`);
    await holder.kill();
    acquireProcessLock(path).release();
    expect(existsSync(path)).toBe(false);
  });

  it('holds an embedded database open, with what its statements wrote, for a takeover to find', { timeout: 60_000 }, async () => {
    const dataDir = freshPath('pglite');
    {
      await using holder = await spawnLockHolder({
        kind: 'embedded-database',
        dataDir,
        statements: ['create table t (v int)', 'insert into t values (7)'],
      });
      const refused = await createDatabase({ dataDir }).then(
        () => undefined,
        (error: unknown) => error,
      );
      expect(refused).toBeInstanceOf(EmbeddedDatabaseInUseError);
      expect(refused).toMatchObject({ pid: holder.pid });
    }
    const mine = await createDatabase({ dataDir });
    try {
      expect((await mine.pglite!.query('select v from t')).rows).toEqual([{ v: 7 }]);
    } finally {
      await mine.close();
    }
  });

  it('runs a script that takes a lock of its own', async () => {
    const path = freshPath('scripted.lock');
    const lockModule = JSON.stringify(pathToFileURL(createRequire(import.meta.url).resolve('@ghostpay/platform/process-lock')).href);
    await using holder = await spawnLockHolder({
      kind: 'script',
      script: `const { acquireProcessLock } = await import(${lockModule}); acquireProcessLock(${JSON.stringify(path)});`,
    });
    expect(readFileSync(path, 'utf8')).toBe(`${holder.pid}\n`);
  });

  it('rejects with what the process wrote to stderr when it exits before holding the lock', async () => {
    await expect(spawnLockHolder({ kind: 'script', script: `throw new Error('no lock for you')` })).rejects.toThrow(
      /exited \(1\) before it held the lock[\s\S]*no lock for you/,
    );
  });

  it('rejects, and kills the process, when it does not hold the lock in time', async () => {
    const pidFile = freshPath('pid');
    const script = `(await import('node:fs')).writeFileSync(${JSON.stringify(pidFile)}, String(process.pid));
      await new Promise(() => setInterval(() => {}, 1000));`;
    await expect(spawnLockHolder({ kind: 'script', script }, { timeoutMs: 3_000 })).rejects.toThrow('did not hold the lock within 3000 ms');
    expect(running(Number(readFileSync(pidFile, 'utf8')))).toBe(false);
  });

  it('exits when the process that started it is gone (killed), leaving its lock stale', async () => {
    const path = freshPath('orphan.lock');
    const helper = JSON.stringify(pathToFileURL(fileURLToPath(new URL('../src/lock-holder.ts', import.meta.url))).href);
    const script = `const { spawnLockHolder } = await import(${helper});
      const holder = await spawnLockHolder({ kind: 'process-lock', path: ${JSON.stringify(path)} });
      process.stdout.write(holder.pid + '\\n');
      setInterval(() => {}, 1000);`;
    const parent = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      const [line] = (await once(parent.stdout!, 'data')) as [Buffer];
      const holderPid = Number(line.toString().trim());
      expect(readFileSync(path, 'utf8')).toBe(`${holderPid}\n`);
      parent.kill('SIGKILL');
      await once(parent, 'exit');
      await vi.waitFor(() => expect(running(holderPid)).toBe(false), { timeout: 10_000, interval: 50 });
      expect(readFileSync(path, 'utf8')).toBe(`${holderPid}\n`);
    } finally {
      parent.kill('SIGKILL');
    }
  });
});

describe('exitedPid', () => {
  it('is the pid of no running process', async () => {
    expect(running(await exitedPid())).toBe(false);
  });
});
