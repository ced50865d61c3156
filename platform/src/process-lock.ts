import { linkSync, readFileSync, rmSync, writeFileSync } from 'node:fs';

/**
 * Lock files this process holds, each with the lock that holds it: a second holder in the same
 * process is refused too, and a lock's `release()` acts only while the path is still its own.
 */
const held = new Map<string, ProcessLock>();

/** The lock at `path` is held by a running process (`pid`, possibly this one). */
export class ProcessLockHeldError extends Error {
  readonly path: string;
  readonly pid: number;
  constructor(path: string, pid: number) {
    super(`${path} is held by process ${pid}${pid === process.pid ? ' (this one)' : ''}`);
    this.name = 'ProcessLockHeldError';
    this.path = path;
    this.pid = pid;
  }
}

export interface ProcessLock {
  /**
   * Removes the lock file (when it is still this lock's). Idempotent for this lock: once released,
   * a later call does nothing, even after the same path was locked again (by this process too).
   */
  release(): void;
}

/**
 * A lock file naming the process that holds it, for what only one process may open at a time
 * (PGlite's data directory, the stack's data directory, the embedded analytics store). In
 * platform, not db, so that a package locking a directory does not bring drizzle, pg and PGlite
 * with it. Created with its content in one step (a link of a written file), so a concurrent taker
 * never reads it empty. A lock whose process is gone (a crash, SIGKILL) is taken over; so is one
 * naming this process that this process does not hold (a container restarted with the same pid).
 * Throws `ProcessLockHeldError` while another running process, or this one, holds it, or what
 * `refuse` makes of the holder's pid (a caller's own error naming what the lock guards).
 *
 * Several processes taking over one stale lock at once (services started together after a
 * crash) get it one: a stale lock is removed only under `<path>.takeover` (see `removeStale`).
 * Removing it without that, a taker could remove the lock another taker had just created, and
 * both went on as its holder.
 */
export function acquireProcessLock(
  path: string,
  refuse: (holderPid: number) => Error = (holderPid) => new ProcessLockHeldError(path, holderPid),
): ProcessLock {
  if (held.has(path)) throw refuse(process.pid);
  const staged = `${path}.${process.pid}.${Date.now()}`;
  writeFileSync(staged, `${process.pid}\n`, { mode: 0o600 });
  try {
    for (let takeovers = 0; !linked(staged, path); ) {
      const holder = lockHolder(path);
      if (holder === 'absent') continue; // released meanwhile
      if (holder !== undefined && isAnotherRunning(holder)) throw refuse(holder);
      // Stale each time, and each time taken by another first: processes keep dying holding it.
      if (takeovers++ === maxTakeovers)
        throw new Error(`${path}: a stale lock was taken over ${maxTakeovers} times by other processes that are gone`);
      removeStale(path, staged, refuse);
    }
  } finally {
    rmSync(staged, { force: true });
  }
  const lock: ProcessLock = {
    release() {
      // Keyed by the lock, not the path: a stale second release() after the path was locked again
      // removed the new holder's lock file, and another process could then take it as well.
      if (held.get(path) !== lock) return;
      held.delete(path);
      if (lockHolder(path) === process.pid) rmSync(path, { force: true });
    },
  };
  held.set(path, lock);
  return lock;
}

const maxTakeovers = 5;
/** How long a taker waits for another process's takeover of the same lock before it is refused. */
const takeoverWaitMs = 2_000;

/** Links `staged` as `path`; false when `path` exists. */
function linked(staged: string, path: string): boolean {
  try {
    linkSync(staged, path);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  }
}

/**
 * Removes the lock at `path` if it is still stale, holding `<path>.takeover` (a lock file of the
 * same kind) meanwhile: a lock file is removed only by the one process holding the takeover, after
 * judging it again there, so it is never one another taker created in between. The takeover is
 * held for a read and a removal; another taker waits for it (`takeoverWaitMs`, then it is refused
 * as by a holder). One left by a process that died while holding it is removed; only several
 * takers removing that one at the same moment could still both go on.
 */
function removeStale(path: string, staged: string, refuse: (holderPid: number) => Error): void {
  const takeover = `${path}.takeover`;
  const deadline = Date.now() + takeoverWaitMs;
  while (!linked(staged, takeover)) {
    const taker = lockHolder(takeover);
    if (taker === 'absent') continue; // its taker is done
    if (taker === undefined || !isAnotherRunning(taker)) rmSync(takeover, { force: true });
    else if (Date.now() >= deadline) throw refuse(taker);
    else sleep(1);
  }
  try {
    // Judged again: another taker may have removed it meanwhile, and a new holder created it.
    const holder = lockHolder(path);
    if (holder === 'absent') return;
    if (holder !== undefined && isAnotherRunning(holder)) throw refuse(holder);
    rmSync(path, { force: true });
  } finally {
    if (lockHolder(takeover) === process.pid) rmSync(takeover, { force: true });
  }
}

function sleep(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function isAnotherRunning(pid: number): boolean {
  return pid !== process.pid && isRunning(pid);
}

/** The pid a lock file names; `undefined` when it names none, `'absent'` when there is no file. */
function lockHolder(path: string): number | 'absent' | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    // Another error (EACCES: another user's lock) is not a reason to take it over.
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return 'absent';
    throw error;
  }
  const pid = Number(text.trim());
  return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists, under another user.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
