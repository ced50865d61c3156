/**
 * `acquireProcessLock`: one process at a time for a directory (PGlite's, the stack's, the
 * embedded analytics store's). Real files and real processes: another holder is a child
 * process, a stale lock one whose process has exited.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { exitedPid, type LockHolder, spawnLockHolder } from '@ghostpay/test-support';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { acquireProcessLock, type ProcessLock, ProcessLockHeldError } from '../src/index.ts';

const root = mkdtempSync(join(tmpdir(), 'ghostpay-process-lock-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const lockModule = fileURLToPath(new URL('../src/process-lock.ts', import.meta.url));

const held: ProcessLock[] = [];
const holders: LockHolder[] = [];
const children: ChildProcess[] = [];
afterEach(async () => {
  for (const lock of held.splice(0)) lock.release();
  await Promise.all(holders.splice(0).map((holder) => holder.kill()));
  for (const child of children.splice(0)) child.kill('SIGKILL');
});
let n = 0;
const freshLockPath = () => join(root, `dir-${++n}.lock`);
const acquire = (path: string) => {
  const lock = acquireProcessLock(path);
  held.push(lock);
  return lock;
};
const refusal = (path: string) => {
  try {
    held.push(acquireProcessLock(path));
  } catch (error) {
    return error;
  }
  throw new Error(`${path} was not refused`);
};
const holderIn = (path: string) => readFileSync(path, 'utf8');

/** Another process that takes the lock at `path` and keeps it until killed. */
async function otherProcessHolding(path: string): Promise<LockHolder> {
  const holder = await spawnLockHolder({ kind: 'process-lock', path });
  holders.push(holder);
  return holder;
}

describe('acquireProcessLock', () => {
  it('writes this pid, refuses a second taker in this process, and is free again once released', () => {
    const path = freshLockPath();
    const lock = acquire(path);
    expect(holderIn(path)).toBe(`${process.pid}\n`);
    const refused = refusal(path);
    expect(refused).toBeInstanceOf(ProcessLockHeldError);
    expect(refused).toMatchObject({ path, pid: process.pid, message: `${path} is held by process ${process.pid} (this one)` });
    lock.release();
    expect(existsSync(path)).toBe(false);
    lock.release();
    acquire(path);
    expect(holderIn(path)).toBe(`${process.pid}\n`);
    // Nothing but the lock is left beside it (the file it was linked from is removed).
    expect(readdirSync(root).filter((name) => name.startsWith(`dir-${n}.`))).toEqual([`dir-${n}.lock`]);
  });

  it('refuses a lock another running process holds, naming it, and takes it over once that process is gone', async () => {
    const path = freshLockPath();
    const holder = await otherProcessHolding(path);
    const refused = refusal(path);
    expect(refused).toBeInstanceOf(ProcessLockHeldError);
    expect(refused).toMatchObject({ path, pid: holder.pid, message: `${path} is held by process ${holder.pid}` });
    // Killed without a chance to remove its lock (a crash): the lock is stale, and is taken over.
    await holder.kill();
    expect(holderIn(path)).toBe(`${holder.pid}\n`);
    acquire(path);
    expect(holderIn(path)).toBe(`${process.pid}\n`);
  });

  it('takes over a lock naming an exited process, an unreadable pid, or this process when this process does not hold it', async () => {
    for (const content of [`${await exitedPid()}\n`, 'not a pid\n', '', `${process.pid}\n`]) {
      const path = freshLockPath();
      writeFileSync(path, content);
      const lock = acquire(path);
      expect(holderIn(path)).toBe(`${process.pid}\n`);
      lock.release();
      expect(existsSync(path)).toBe(false);
    }
  });

  it('leaves a stale lock to the running process taking it over: refused, naming that process, the lock untouched', async () => {
    const path = freshLockPath();
    const stale = `${await exitedPid()}\n`;
    writeFileSync(path, stale);
    const taker = await otherProcessHolding(`${path}.takeover`);
    // Refused once the takeover wait (2 s) is over: the taker still holds it.
    const refused = refusal(path);
    expect(refused).toBeInstanceOf(ProcessLockHeldError);
    expect(refused).toMatchObject({ path, pid: taker.pid });
    expect(holderIn(path)).toBe(stale);
    expect(holderIn(`${path}.takeover`)).toBe(`${taker.pid}\n`);
  });

  it('takes over a stale lock whose takeover was left by a process that died holding it, removing both', async () => {
    const path = freshLockPath();
    writeFileSync(path, `${await exitedPid()}\n`);
    writeFileSync(`${path}.takeover`, `${await exitedPid()}\n`);
    acquire(path);
    expect(holderIn(path)).toBe(`${process.pid}\n`);
    expect(readdirSync(root).filter((name) => name.startsWith(`dir-${n}.`))).toEqual([`dir-${n}.lock`]);
  });

  it('does not take for stale a lock it cannot read for another reason than its absence', () => {
    const path = freshLockPath();
    // A directory where the lock should be: EISDIR, as EACCES would be for another user's lock (root reads anything).
    mkdirSync(path);
    expect(() => acquireProcessLock(path)).toThrow(expect.objectContaining({ code: 'EISDIR' }));
    expect(statSync(path).isDirectory()).toBe(true);
    expect(readdirSync(root).filter((name) => name.startsWith(`dir-${n}.`))).toEqual([`dir-${n}.lock`]);
  });

  it('does not remove on release a lock that is no longer this one', async () => {
    const path = freshLockPath();
    const lock = acquire(path);
    // Taken over meanwhile (deleted by hand, then taken by another process).
    rmSync(path);
    const other = await otherProcessHolding(path);
    lock.release();
    expect(holderIn(path)).toBe(`${other.pid}\n`);
  });
});

describe('acquireProcessLock, several processes taking over one stale lock at once', () => {
  /** A process that takes the lock at the path it reads on stdin, answers "won" or "lost", and holds what it won until killed. */
  async function racer(): Promise<{ child: ChildProcess; take: (path: string) => Promise<string> }> {
    const script = `
      const { acquireProcessLock } = await import(${JSON.stringify(lockModule)});
      process.stdin.once('data', (line) => {
        let outcome = 'won';
        try {
          acquireProcessLock(line.toString().trim());
        } catch (error) {
          outcome = error.name === 'ProcessLockHeldError' ? 'lost' : 'failed: ' + error.message;
        }
        process.stdout.write(outcome + '\\n');
      });
      process.stdout.write('ready\\n');
      setInterval(() => {}, 1000);`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['pipe', 'pipe', 'inherit'] });
    children.push(child);
    const [ready] = (await once(child.stdout!, 'data')) as [Buffer];
    expect(ready.toString()).toBe('ready\n');
    return {
      child,
      take: async (path) => {
        const answer = once(child.stdout!, 'data') as Promise<[Buffer]>;
        child.stdin!.write(`${path}\n`);
        return (await answer)[0].toString().trim();
      },
    };
  }

  it('gives it to exactly one of them, the one its file names; the others are refused', { timeout: 60_000 }, async () => {
    const stale = await exitedPid();
    for (let round = 0; round < 10; round++) {
      const path = freshLockPath();
      writeFileSync(path, `${stale}\n`);
      const racers = await Promise.all(Array.from({ length: 6 }, racer));
      // All told at once: each reads the stale lock before any has taken it over.
      const outcomes = await Promise.all(racers.map((r) => r.take(path)));
      const winners = racers.filter((_, i) => outcomes[i] === 'won');
      expect(outcomes.filter((outcome) => outcome !== 'won').every((outcome) => outcome === 'lost')).toBe(true);
      expect(winners).toHaveLength(1);
      expect(holderIn(path)).toBe(`${winners[0]!.child.pid}\n`);
      for (const child of children.splice(0)) child.kill('SIGKILL');
      expect(readdirSync(root).filter((name) => name.startsWith(`dir-${n}.`))).toEqual([`dir-${n}.lock`]);
    }
  });
});
