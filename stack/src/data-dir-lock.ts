import { linkSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { StackStartError } from './start-error.ts';

/** The file in the data directory naming the process whose stack has it open. */
export const dataDirLockFile = 'stack.lock';

/** Lock files this process holds: a second stack in the same process must be refused too. */
const held = new Set<string>();

/** Why a data directory could not be locked: another stack (process `pid`) has it open. */
export class DataDirInUseError extends StackStartError {
  readonly pid: number;
  constructor(dataDir: string, pid: number) {
    super(
      `${dataDir} is in use by another GhostPay stack (process ${pid}${pid === process.pid ? ', this one' : ''}): ` +
        'PGlite and the embedded analytics store allow one process. Stop it first, or start with another GHOSTPAY_DATA_DIR.',
    );
    this.name = 'DataDirInUseError';
    this.pid = pid;
  }
}

export interface DataDirLock {
  /** Removes the lock file (when it is still this lock's). Idempotent. */
  release(): void;
}

/**
 * One stack per data directory: PGlite and the embedded analytics store under it are
 * single-process (two PostgreSQL instances over one data directory, each with its own buffers
 * and WAL position, corrupt it; two writers interleave the analytics files), and two starts would
 * both rewrite the dev credentials. The lock is `<dataDir>/stack.lock` holding the pid, created
 * with its content in one step (a link of a written file), so a concurrent start never reads it
 * empty. A lock whose process is gone (a crash, SIGKILL) is taken over; so is one naming this
 * process that this process does not hold (a container restarted with the same pid).
 */
export function lockDataDir(dataDir: string): DataDirLock {
  const path = join(dataDir, dataDirLockFile);
  if (held.has(path)) throw new DataDirInUseError(dataDir, process.pid);
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
        if (holder !== undefined && holder !== process.pid && isRunning(holder)) throw new DataDirInUseError(dataDir, holder);
        // A stale lock, taken over once; another start taking it over at the same moment wins.
        if (attempt > 0) throw new Error(`${path}: another start took over the stale lock at the same moment`, { cause: error });
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
