import { linkSync, readFileSync, rmSync, writeFileSync } from 'node:fs';

/** Lock files this process holds: a second holder in the same process is refused too. */
const held = new Set<string>();

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
  /** Removes the lock file (when it is still this lock's). Idempotent. */
  release(): void;
}

/**
 * A lock file naming the process that holds it, for what only one process may open at a time
 * (PGlite's data directory, the stack's data directory, the embedded analytics store). In
 * platform, not db, so that a package locking a directory does not bring drizzle, pg and PGlite
 * with it. Created with its content in one step (a link of a written file), so a concurrent taker
 * never reads it empty. A lock whose process is gone (a crash, SIGKILL) is taken over; so is one
 * naming this process that this process does not hold (a container restarted with the same pid).
 * Throws `ProcessLockHeldError` while another running process, or this one, holds it.
 */
export function acquireProcessLock(path: string): ProcessLock {
  if (held.has(path)) throw new ProcessLockHeldError(path, process.pid);
  const staged = `${path}.${process.pid}.${Date.now()}`;
  writeFileSync(staged, `${process.pid}\n`, { mode: 0o600 });
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        linkSync(staged, path);
        break;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
        const holder = lockHolder(path);
        if (holder !== undefined && holder !== process.pid && isRunning(holder)) throw new ProcessLockHeldError(path, holder);
        // A stale lock, taken over once; another taker at the same moment wins.
        if (attempt > 0) throw new Error(`${path}: another process took over the stale lock at the same moment`, { cause: error });
        rmSync(path, { force: true });
      }
    }
  } finally {
    rmSync(staged, { force: true });
  }
  held.add(path);
  return {
    release() {
      if (!held.delete(path)) return;
      if (lockHolder(path) === process.pid) rmSync(path, { force: true });
    },
  };
}

function lockHolder(path: string): number | undefined {
  try {
    const pid = Number(readFileSync(path, 'utf8').trim());
    return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
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
