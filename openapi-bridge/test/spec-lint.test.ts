import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { bridgeRootForTests } from './manifest-fixtures.ts';

const repoRoot = resolve(bridgeRootForTests, '..');

/** Runs `redocly lint` (pinned @redocly/cli) on the Node 24 binary the project pins, offline. */
function redoclyLint(cwd: string) {
  return spawnSync(
    join(repoRoot, 'node_modules/.bin/node'),
    [join(repoRoot, 'node_modules/@redocly/cli/bin/cli.js'), 'lint', 'openapi.yaml'],
    {
      cwd,
      encoding: 'utf8',
      timeout: 60_000,
      env: { ...process.env, REDOCLY_TELEMETRY: 'off', REDOCLY_SUPPRESS_UPDATE_NOTICE: 'true', NO_COLOR: '1' },
    },
  );
}

describe('openapi.yaml', () => {
  it('passes redocly lint with the recommended rules and no warnings', () => {
    const run = redoclyLint(bridgeRootForTests);
    const output = `${run.stdout}\n${run.stderr}`;
    expect(run.status, output).toBe(0);
    expect(output).toContain('Your API description is valid');
    expect(output).not.toMatch(/You have \d+ warning/);
  });

  it('fails the lint when the spec is broken (the check is real)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'bridge-lint-'));
    try {
      cpSync(join(bridgeRootForTests, 'redocly.yaml'), join(dir, 'redocly.yaml'));
      const spec = readFileSync(join(bridgeRootForTests, 'openapi.yaml'), 'utf8');
      writeFileSync(join(dir, 'openapi.yaml'), spec.replace('#/components/schemas/CardList', '#/components/schemas/CardPage'));
      const run = redoclyLint(dir);
      expect(run.status).not.toBe(0);
      expect(`${run.stdout}${run.stderr}`).toMatch(/CardPage/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
