import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';

const repo = join(import.meta.dirname, '..', '..', '..');
const dockerfile = readFileSync(join(import.meta.dirname, '..', 'Dockerfile'), 'utf8');

/** Every workspace's package.json, relative to the repository (as the deps stage's COPY --parents takes them). */
function workspacePackageFiles(): string[] {
  const { workspaces } = JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')) as { workspaces: string[] };
  const files: string[] = [];
  for (const pattern of workspaces) {
    const folders = pattern.endsWith('/*')
      ? execFileSync('sh', ['-c', `ls -d ${pattern}/`], { cwd: repo, encoding: 'utf8' })
          .split('\n')
          .filter(Boolean)
          .map((folder) => folder.replace(/\/$/, ''))
      : [pattern];
    for (const folder of folders) files.push(`${folder}/package.json`);
  }
  return files;
}

/**
 * The packages the image's `npm ci` installs: the Dockerfile's deps stage (its `RUN node …` steps,
 * then its `npm ci` command) run in a scratch copy of the lockfile and every package.json, with
 * `--dry-run --offline` (the lockfile says everything; nothing is fetched or written).
 */
function imagePackages(): string[] {
  const deps = dockerfile.split(/^FROM /m)[1] ?? '';
  const runs = deps
    .replace(/\\\n\s*/g, ' ')
    .split('\n')
    .map((line) => /^RUN\s+(?:--mount=\S+\s+)*(.*)$/.exec(line)?.[1])
    .filter((command): command is string => command !== undefined);
  const npmCi = runs.findIndex((command) => /^npm ci\b/.test(command));
  expect(npmCi, 'no npm ci in the deps stage').toBeGreaterThan(-1);
  const scratch = mkdtempSync(join(tmpdir(), 'analytics-image-deps-'));
  try {
    for (const file of ['package.json', 'package-lock.json', ...workspacePackageFiles()]) {
      mkdirSync(join(scratch, dirname(file)), { recursive: true });
      copyFileSync(join(repo, file), join(scratch, file));
    }
    for (const command of runs.slice(0, npmCi))
      execFileSync('sh', ['-c', command], { cwd: scratch, stdio: ['ignore', 'ignore', 'inherit'] });
    const output = execFileSync('sh', ['-c', `${runs[npmCi]} --dry-run --offline`], {
      cwd: scratch,
      encoding: 'utf8',
      env: { ...process.env, npm_config_update_notifier: 'false', npm_config_loglevel: 'error' },
    });
    return [...output.matchAll(/^add (\S+) \S+$/gm)].map((match) => match[1]!);
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

describe('the analytics image', () => {
  it("installs its runtime dependencies and none of PostgreSQL's, db's or the test tooling", () => {
    const installed = imagePackages();
    // Not vacuous: what the service runs on is there.
    for (const name of ['@ghostpay/analytics', '@ghostpay/platform', 'mongodb', '@apollo/server', 'graphql'])
      expect(installed).toContain(name);
    // Analytics does not use PostgreSQL (platform's pg is a devDependency, for its telemetry test).
    for (const name of [
      'pg',
      'pg-pool',
      'pgpass',
      '@ghostpay/db',
      'drizzle-orm',
      '@electric-sql/pglite',
      '@ghostpay/test-support',
      'vitest',
    ])
      expect(installed, name).not.toContain(name);
  }, 60_000);
});
