/**
 * The closing line CI reads (`tests: N passed, N failed, N skipped`, test-support's summary
 * reporter) against real vitest runs of small fixture files: a run that failed must never print
 * "0 failed", whatever failed. A `beforeAll` that throws (the way a missing service fails: promtool,
 * Prometheus, a stack that did not start) leaves its tests skipped, not failed; an `afterAll`,
 * an import or an unhandled error fails the run without failing any test.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { repoPath } from '../src/repo.ts';

const work = mkdtempSync(join(tmpdir(), 'ghostpay-summary-reporter-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const fixtures: Record<string, string> = {
  'green.test.ts': `import { it } from 'vitest';
it('passes', () => {});
it('passes too', () => {});
it.skip('is skipped', () => {});
`,
  'missing-service.test.ts': `import { beforeAll, describe, it } from 'vitest';
describe('needs a service', () => {
  beforeAll(() => { throw new Error('promtool is missing'); });
  it('would check something', () => {});
  it('would check something else', () => {});
});
`,
  'file-hook.test.ts': `import { beforeAll, it } from 'vitest';
beforeAll(() => { throw new Error('the stack did not start'); });
it('would use the stack', () => {});
`,
  'cleanup.test.ts': `import { afterAll, describe, it } from 'vitest';
describe('leaves something behind', () => {
  afterAll(() => { throw new Error('could not stop the server'); });
  it('passes', () => {});
});
`,
  'import.test.ts': `import './no-such-module.ts';
import { it } from 'vitest';
it('never collected', () => {});
`,
  'unhandled.test.ts': `import { it } from 'vitest';
it('passes, then throws from a timer', async () => {
  setTimeout(() => { throw new Error('late'); }, 1);
  await new Promise((resolve) => setTimeout(resolve, 50));
});
`,
};

/** Runs vitest on `files` (of the fixtures) with the summary reporter; its closing line and exit code. */
async function summaryOf(files: string[]): Promise<{ line: string; code: number }> {
  const dir = mkdtempSync(join(work, 'run-'));
  mkdirSync(join(dir, 'test'));
  // vitest and the test files resolve 'vitest' from the repository's node_modules.
  symlinkSync(repoPath('node_modules'), join(dir, 'node_modules'));
  writeFileSync(join(dir, 'vitest.config.ts'), "export default { test: { include: ['test/**/*.test.ts'] } };\n");
  for (const file of files) writeFileSync(join(dir, 'test', file), fixtures[file]!);
  const { stdout, code } = await new Promise<{ stdout: string; code: number }>((resolve) =>
    execFile(
      repoPath('node_modules/.bin/node'),
      [
        repoPath('node_modules/vitest/vitest.mjs'),
        'run',
        '--config',
        'vitest.config.ts',
        '--reporter=dot',
        `--reporter=${repoPath('test-support/src/summary-reporter.ts')}`,
      ],
      // A clean environment: not this run's vitest worker variables.
      { cwd: dir, env: { PATH: process.env.PATH, HOME: process.env.HOME, CI: 'true', NO_COLOR: '1' }, timeout: 60_000 },
      (error, out) => resolve({ stdout: out, code: typeof error?.code === 'number' ? error.code : error ? -1 : 0 }),
    ),
  );
  const line = stdout.match(/^tests: .*$/m)?.[0];
  expect(line, stdout).toBeDefined();
  return { line: line!, code };
}

describe('the summary line CI reads', () => {
  it('counts passed and skipped tests of a green run, and no failure', async () => {
    expect(await summaryOf(['green.test.ts'])).toEqual({ line: 'tests: 2 passed, 0 failed, 1 skipped', code: 0 });
  }, 60_000);

  it('counts a hook that threw, a file that did not import and an unhandled error as failures, though no test failed', async () => {
    const { line, code } = await summaryOf(Object.keys(fixtures));
    expect(code).toBe(1);
    // green 2 + cleanup 1 + unhandled 1 passed; one failure each for the describe's beforeAll,
    // the file's beforeAll, the afterAll, the import and the timer; skipped: green's skip and
    // the 3 tests the two failed beforeAlls kept from running.
    expect(line).toBe('tests: 4 passed, 5 failed, 4 skipped');
  }, 60_000);

  it('says a run whose only fault is a missing service failed', async () => {
    const { line, code } = await summaryOf(['green.test.ts', 'missing-service.test.ts']);
    expect(code).toBe(1);
    expect(line).toBe('tests: 2 passed, 1 failed, 3 skipped');
  }, 60_000);
});
