import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnLockHolder } from '@ghostpay/test-support';
import { afterAll, describe, expect, it } from 'vitest';
import { DataDirInUseError, dataDirLockFile, lockDataDir, StackStartError } from '../src/index.ts';

const root = mkdtempSync(join(tmpdir(), 'ghostpay-data-dir-lock-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** What `lockDataDir` throws, or undefined when it locked (the lock is released again). */
function refusal(dataDir: string): unknown {
  try {
    lockDataDir(dataDir).release();
    return undefined;
  } catch (error) {
    return error;
  }
}

describe('a data directory another stack holds', () => {
  it('is refused naming the lock file, the process holding it and what to do', async () => {
    const dataDir = join(root, 'other-process');
    const lockFile = join(dataDir, dataDirLockFile);
    mkdirSync(dataDir);
    // Another stack's process: it holds the lock, its pid in the lock file.
    const holder = await spawnLockHolder({ kind: 'process-lock', path: lockFile });
    try {
      const refused = refusal(dataDir);
      expect(refused).toBeInstanceOf(DataDirInUseError);
      // npm start prints a StackStartError's message alone: it must say everything.
      expect(refused).toBeInstanceOf(StackStartError);
      expect(refused).toMatchObject({ pid: holder.pid, lockFile });
      const { message } = refused as Error;
      expect(message).toContain(`its lock file ${lockFile} names process ${holder.pid},`);
      expect(message).toContain(`kill ${holder.pid}`);
      expect(message).toContain('another GHOSTPAY_DATA_DIR');
      expect(message).toContain(`delete ${lockFile}`);
    } finally {
      await holder.kill();
    }
  });

  it('held by this process: says so, and suggests neither killing it nor deleting its lock', () => {
    const dataDir = join(root, 'this-process');
    const lockFile = join(dataDir, dataDirLockFile);
    mkdirSync(dataDir);
    const lock = lockDataDir(dataDir);
    try {
      const { message } = refusal(dataDir) as Error;
      expect(message).toContain(`its lock file ${lockFile} names process ${process.pid} (this one)`);
      expect(message).toContain('Close the stack this process started on it first');
      expect(message).not.toMatch(/kill|delete/);
    } finally {
      lock.release();
    }
  });
});
