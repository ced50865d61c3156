import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';

/**
 * scripts/complete-lockfile.ts (here because scripts/ has no test project of its own), run as
 * `npm run lockfile:complete` runs it, on lockfiles shaped like the registry leaves them: only
 * the linux-x64 platform packages.
 */
const script = fileURLToPath(new URL('../../scripts/complete-lockfile.ts', import.meta.url));
const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'ghostpay-lockfile-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const esbuild = (version: string, dev = false) => ({
  version,
  ...(dev ? { dev: true } : {}),
  optionalDependencies: { '@esbuild/linux-x64': version, '@esbuild/darwin-arm64': version },
});
const linux = (version: string, dev = false) => ({ version, ...(dev ? { dev: true } : {}), optional: true, os: ['linux'], cpu: ['x64'] });

async function complete(packages: Record<string, unknown>, name: string) {
  const path = join(dir, name);
  writeFileSync(path, JSON.stringify({ name: 'x', lockfileVersion: 3, requires: true, packages: { '': { name: 'x' }, ...packages } }));
  const outcome = await run(process.execPath, [script, path]).then(
    ({ stdout }) => ({ code: 0, output: stdout }),
    (error: { code: number; stderr: string }) => ({ code: error.code, output: error.stderr }),
  );
  return { ...outcome, packages: JSON.parse(readFileSync(path, 'utf8')).packages as Record<string, { version: string; dev?: boolean }> };
}

describe('complete-lockfile', () => {
  it("adds a nested package's platform builds at its own version beside it, not only the root's", async () => {
    // The root esbuild 0.28 and drizzle-kit's own esbuild 0.25, as npm lays them out.
    const { code, output, packages } = await complete(
      {
        'node_modules/esbuild': esbuild('0.28.2'),
        'node_modules/@esbuild/linux-x64': linux('0.28.2'),
        'node_modules/drizzle-kit': { version: '0.31.11', dev: true },
        'node_modules/drizzle-kit/node_modules/esbuild': esbuild('0.25.12', true),
        'node_modules/drizzle-kit/node_modules/@esbuild/linux-x64': linux('0.25.12', true),
      },
      'nested.json',
    );
    expect({ code, output }).toEqual({ code: 0, output: 'complete-lockfile: added 2 optional platform entries\n' });
    expect(packages['node_modules/@esbuild/darwin-arm64']).toEqual({ version: '0.28.2', optional: true, os: ['darwin'], cpu: ['arm64'] });
    // Where Node resolves it from drizzle-kit's esbuild, ahead of the root's 0.28.2.
    expect(packages['node_modules/drizzle-kit/node_modules/@esbuild/darwin-arm64']).toEqual({
      version: '0.25.12',
      dev: true,
      optional: true,
      os: ['darwin'],
      cpu: ['arm64'],
    });
  });

  it('changes nothing in a complete lockfile, whichever ancestor holds the entries', async () => {
    const complete1 = {
      'node_modules/esbuild': esbuild('0.28.2'),
      'node_modules/@esbuild/linux-x64': linux('0.28.2'),
      'node_modules/@esbuild/darwin-arm64': { ...linux('0.28.2'), os: ['darwin'], cpu: ['arm64'] },
      'node_modules/a/node_modules/b/node_modules/esbuild': esbuild('0.25.12'),
      'node_modules/a/node_modules/@esbuild/linux-x64': linux('0.25.12'),
      'node_modules/a/node_modules/@esbuild/darwin-arm64': { ...linux('0.25.12'), os: ['darwin'], cpu: ['arm64'] },
    };
    const { code, output, packages } = await complete(complete1, 'complete.json');
    expect({ code, output }).toEqual({ code: 0, output: 'complete-lockfile: added 0 optional platform entries\n' });
    expect(Object.keys(packages).sort()).toEqual(['', ...Object.keys(complete1)].sort());
  });

  it('refuses, naming it and writing nothing, an optional platform dependency given as a range', async () => {
    const packages = {
      'node_modules/tool': {
        version: '1.0.0',
        optionalDependencies: { '@tool/cli-darwin-arm64': '^1.0.0', '@tool/cli-linux-x64': '1.0.0' },
      },
      'node_modules/@tool/cli-linux-x64': linux('1.0.0'),
    };
    const outcome = await complete(packages, 'range.json');
    expect(outcome.code).toBe(1);
    expect(outcome.output).toContain('node_modules/tool wants @tool/cli-darwin-arm64@^1.0.0');
    expect(Object.keys(outcome.packages).sort()).toEqual(['', ...Object.keys(packages)].sort());
  });
});
