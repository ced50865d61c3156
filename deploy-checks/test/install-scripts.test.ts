/**
 * Every dependency with an install script has a decision in the root package.json's
 * `allowScripts` (npm's install-script policy: `true` runs it, `false` refuses it; npm 12 refuses
 * anything unlisted). A new dependency that brings an install script fails here until someone
 * decides. Install telemetry is refused and switched off: swagger-ui-dist's `@scarf/scarf`
 * reports installs unless the root package says `scarfSettings.enabled: false`.
 */
import { describe, expect, it } from 'vitest';
import { readRepoFile } from '../src/repo.ts';

const root = JSON.parse(readRepoFile('package.json')) as {
  allowScripts?: Record<string, boolean>;
  scarfSettings?: { enabled?: boolean };
};
const lock = JSON.parse(readRepoFile('package-lock.json')) as {
  packages: Record<string, { name?: string; hasInstallScript?: boolean; link?: boolean }>;
};

/** The package name of a lockfile entry (`node_modules/a/node_modules/@s/b` → `@s/b`). */
const nameOf = (path: string) => path.slice(path.lastIndexOf('node_modules/') + 'node_modules/'.length);

describe('install scripts', () => {
  const withScripts = Object.entries(lock.packages)
    .filter(([path, entry]) => path.includes('node_modules/') && entry.hasInstallScript)
    .map(([path]) => nameOf(path));

  it('are each allowed or refused by name in allowScripts', () => {
    expect(withScripts.length).toBeGreaterThan(0);
    const undecided = withScripts.filter((name) => typeof root.allowScripts?.[name] !== 'boolean');
    expect(undecided).toEqual([]);
  });

  it('never include install telemetry: @scarf/scarf is refused and switched off', () => {
    expect(withScripts).toContain('@scarf/scarf');
    expect(root.allowScripts?.['@scarf/scarf']).toBe(false);
    expect(root.scarfSettings?.enabled).toBe(false);
  });
});
