import { describe, expect, it } from 'vitest';
import { withDepsStage } from '../src/deps-stage.ts';
import { readRepoFile } from '../src/repo.ts';

interface PackageJson {
  name: string;
  dependencies?: Record<string, string>;
  workspaces?: string[];
}
const readPackage = (folder: string) => JSON.parse(readRepoFile(`${folder}/package.json`)) as PackageJson;

/** Workspace folders by package name (the services and what they depend on are all plain folders). */
const workspaceFolders = new Map(
  ['platform', 'db', 'test-support', 'router', 'openapi-bridge', 'stack', 'bench', 'deploy-checks', 'reliability']
    .concat(['auth', 'cards', 'charges', 'analytics'].map((name) => `subgraphs/${name}`))
    .map((folder) => [readPackage(folder).name, folder]),
);

/** A service's own folder and, transitively, every workspace in the `dependencies` of its package.json. */
function runtimeWorkspaces(folder: string): string[] {
  const seen = new Set<string>();
  const visit = (current: string) => {
    if (seen.has(current)) return;
    seen.add(current);
    for (const name of Object.keys(readPackage(current).dependencies ?? {})) {
      const dependency = workspaceFolders.get(name);
      if (dependency !== undefined) visit(dependency);
    }
  };
  visit(folder);
  return [...seen];
}

/**
 * Names that third-party packages of the lockfile require for real (`dependencies` and
 * `optionalDependencies` of entries under node_modules, not of our workspaces): an `@types/*`
 * package among them is a runtime dependency of a library (`@opentelemetry/instrumentation-pg`
 * depends on `@types/pg`), not a devDependency of ours that leaked in.
 */
function requiredByLibraries(installed: Set<string>): Set<string> {
  const { packages } = JSON.parse(readRepoFile('package-lock.json')) as {
    packages: Record<string, { dependencies?: Record<string, string>; optionalDependencies?: Record<string, string> }>;
  };
  const required = new Set<string>();
  for (const [path, entry] of Object.entries(packages)) {
    const name = path.split('node_modules/').at(-1)!;
    if (!path.includes('node_modules/') || !installed.has(name)) continue;
    for (const dependency of Object.keys({ ...entry.dependencies, ...entry.optionalDependencies })) required.add(dependency);
  }
  return required;
}

/** PostgreSQL's client and our database layer: in an image only if the service uses PostgreSQL. */
const postgresPackages = ['pg', 'pg-pool', 'pgpass', '@ghostpay/db', 'drizzle-orm', '@electric-sql/pglite'];

/** Dev tooling of the repository and its workspaces: in no image. */
const devTooling = [
  '@ghostpay/test-support',
  'vitest',
  'playwright-core',
  '@biomejs/biome',
  'typescript',
  'drizzle-kit',
  // drizzle-kit's own dependencies (db's devDependency brought them into the images of its users).
  'esbuild',
  'tsx',
  'turbo',
  'patch-package',
  'fast-check',
  '@redocly/cli',
  '@types/ws',
];

const services = [
  { folder: 'router', postgres: true, uses: ['@apollo/gateway', 'ioredis', 'graphiql', 'ws'] },
  { folder: 'subgraphs/auth', postgres: true, uses: ['@apollo/subgraph', 'ioredis', 'jose'] },
  { folder: 'subgraphs/cards', postgres: true, uses: ['@apollo/subgraph', 'dataloader'] },
  { folder: 'subgraphs/charges', postgres: true, uses: ['@apollo/subgraph', 'graphql-ws', 'ws'] },
  { folder: 'subgraphs/analytics', postgres: false, uses: ['@apollo/subgraph', 'mongodb'] },
  { folder: 'openapi-bridge', postgres: false, uses: ['ajv', 'swagger-ui-dist', 'yaml'] },
];

describe('service images', () => {
  it.each(services)(
    '$folder: its deps stage installs its runtime dependencies and no devDependency of any workspace',
    ({ folder, postgres, uses }) => {
      const installed = new Set(withDepsStage(folder, (stage) => stage.installs()));
      const workspaces = runtimeWorkspaces(folder);
      const ownWorkspaceNames = new Set(workspaces.map((workspace) => readPackage(workspace).name));

      // What the service runs on: its workspaces, their dependencies and PostgreSQL's client where it uses it.
      for (const name of [...ownWorkspaceNames, '@ghostpay/platform', 'graphql', '@apollo/server', ...uses])
        expect(installed, name).toContain(name);
      for (const workspace of workspaces)
        for (const name of Object.keys(readPackage(workspace).dependencies ?? {}))
          expect(installed, `${workspace}'s dependency ${name}`).toContain(name);
      expect(workspaces.includes('db'), `${folder} depends on db`).toBe(postgres);
      for (const name of postgresPackages) expect(installed.has(name), `${name} in the ${folder} image`).toBe(postgres);

      // Nothing of the test tooling, no other workspace, no type packages our devDependencies bring.
      for (const name of devTooling) expect(installed, name).not.toContain(name);
      for (const name of installed)
        if (name.startsWith('@ghostpay/')) expect(ownWorkspaceNames, `${name} in the ${folder} image`).toContain(name);
      const required = requiredByLibraries(installed);
      for (const name of installed)
        if (name.startsWith('@types/')) expect(required, `${name} in the ${folder} image, required by no library`).toContain(name);
    },
    60_000,
  );
});
