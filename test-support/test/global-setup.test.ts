/**
 * The global setup under CI: a missing service fails the run (never a run of skipped tests), and
 * fails it before anything starts, since a setup that throws gets no teardown. Run in a child
 * process whose PATH has no redis-server and whose TMPDIR is its own, so what it left is visible.
 */
import { execFile } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { findPostgresBin } from '../src/postgres-cluster.ts';

const run = promisify(execFile);
const made: string[] = [];

afterEach(async () => {
  for (const dir of made.splice(0)) {
    // A cluster left running by a setup that failed (the old behaviour): stop it, then remove it.
    for (const entry of readdirSync(join(dir, 'tmp'))) {
      const dataDir = join(dir, 'tmp', entry, 'data');
      const pgCtl = join(findPostgresBin() ?? '', 'pg_ctl');
      const args = ['-D', dataDir, '-m', 'immediate', '-w', 'stop'];
      await (process.getuid?.() === 0 ? run('runuser', ['-u', 'postgres', '--', pgCtl, ...args]) : run(pgCtl, args)).catch(() => {});
    }
    rmSync(dir, { recursive: true, force: true });
  }
});

describe('global setup under CI=true', () => {
  it('fails when redis-server is missing, before starting PostgreSQL', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ghostpay-setup-'));
    made.push(dir);
    // Traversable by the postgres user, which owns the cluster when this runs as root.
    chmodSync(dir, 0o755);
    const bin = join(dir, 'bin');
    const temp = join(dir, 'tmp');
    for (const sub of [bin, temp]) {
      mkdirSync(sub);
      chmodSync(sub, 0o755);
    }
    // Everything the setup runs, but no redis-server.
    for (const tool of ['sh', 'id', 'runuser']) {
      const found = (await run('sh', ['-c', `command -v ${tool}`]).catch(() => ({ stdout: '' }))).stdout.trim();
      if (found) symlinkSync(found, join(bin, tool));
    }
    const script = `import(${JSON.stringify(join(import.meta.dirname, '../src/global-setup.ts'))}).then((m) => m.default({ provide() {} }))`;
    const outcome = await run(process.execPath, ['--input-type=module', '-e', script], {
      env: { CI: 'true', PATH: bin, TMPDIR: temp, HOME: dir },
      timeout: 60_000,
    }).then(
      () => 'resolved',
      (error: { stderr: string }) => error.stderr,
    );
    expect(outcome).toContain('CI=true but redis-server was not found');
    // Nothing started, nothing left: no cluster directory in its TMPDIR.
    expect(readdirSync(temp)).toEqual([]);
  });
});
