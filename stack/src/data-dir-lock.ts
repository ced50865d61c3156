import { join } from 'node:path';
import { acquireProcessLock, type ProcessLock } from '@ghostpay/platform/process-lock';
import { StackStartError } from './start-error.ts';

/** The file in the data directory naming the process whose stack has it open. */
export const dataDirLockFile = 'stack.lock';

/**
 * Why a data directory could not be locked: `<dataDir>/stack.lock` names a running process
 * (`pid`) whose stack has it open. The message names the lock file, the process and what to do.
 */
export class DataDirInUseError extends StackStartError {
  readonly pid: number;
  /** The lock file: `<dataDir>/stack.lock`. */
  readonly lockFile: string;
  constructor(dataDir: string, pid: number) {
    const lockFile = join(dataDir, dataDirLockFile);
    const self = pid === process.pid;
    super(
      `${dataDir} is in use by another GhostPay stack: its lock file ${lockFile} names process ${pid}${self ? ' (this one)' : ''}, ` +
        'and PGlite and the embedded analytics store allow one process per data directory. ' +
        (self
          ? 'Close the stack this process started on it first, or start with another GHOSTPAY_DATA_DIR.'
          : `Stop that stack first (Ctrl-C where it runs, or kill ${pid}), or start with another GHOSTPAY_DATA_DIR. ` +
            `If process ${pid} is not a GhostPay stack (a stack that crashed and its pid was reused), delete ${lockFile}.`),
    );
    this.name = 'DataDirInUseError';
    this.pid = pid;
    this.lockFile = lockFile;
  }
}

export type DataDirLock = ProcessLock;

/**
 * One stack per data directory: PGlite and the embedded analytics store under it are
 * single-process (two PostgreSQL instances over one data directory, each with its own buffers
 * and WAL position, corrupt it; two writers interleave the analytics files), and two starts would
 * both rewrite the dev credentials. The lock is `<dataDir>/stack.lock` holding the pid (platform's
 * `acquireProcessLock`: a lock whose process is gone is taken over). PGlite's own directory is
 * locked by db as well (`pglite.lock`), and the analytics store's by analytics (`analytics.lock`),
 * for the services and CLIs that open them without the stack.
 */
export function lockDataDir(dataDir: string): DataDirLock {
  return acquireProcessLock(join(dataDir, dataDirLockFile), (holderPid) => new DataDirInUseError(dataDir, holderPid));
}
