import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { acquireProcessLock, ProcessLockHeldError } from '../src/index.ts';

const root = mkdtempSync(join(tmpdir(), 'ghostpay-process-lock-release-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('process lock release', () => {
  it('belongs to its lock: a stale second release after the path was locked again leaves the new holder its lock', () => {
    const path = join(root, 'data.lock');
    const first = acquireProcessLock(path);
    first.release();
    const second = acquireProcessLock(path);
    try {
      first.release();
      expect(existsSync(path)).toBe(true);
      expect(readFileSync(path, 'utf8')).toBe(`${process.pid}\n`);
      expect(() => acquireProcessLock(path)).toThrow(ProcessLockHeldError);
    } finally {
      second.release();
    }
    expect(existsSync(path)).toBe(false);
    second.release();
    acquireProcessLock(path).release();
  });
});
