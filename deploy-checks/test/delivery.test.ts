import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { routerNodeOptions } from '@ghostpay/router';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { inBuildContext, withDepsStage } from '../src/deps-stage.ts';
import { readRepoFile, repoPath } from '../src/repo.ts';

interface Step {
  name?: string;
  id?: string;
  if?: string;
  run?: string;
  uses?: string;
  with?: Record<string, unknown>;
}
interface Workflow {
  on: unknown;
  jobs: Record<string, { steps: Step[]; needs?: string | string[]; strategy?: { matrix: Record<string, unknown> } }>;
}

const serviceFolders = ['router', 'subgraphs/auth', 'subgraphs/cards', 'subgraphs/charges', 'subgraphs/analytics', 'openapi-bridge'];

interface PackageJson {
  name: string;
  dependencies?: Record<string, string>;
  workspaces?: string[];
}
const readPackage = (folder: string) => JSON.parse(readRepoFile(`${folder}/package.json`)) as PackageJson;

/** Every workspace folder by package name, from the root package.json's `workspaces` globs. */
function workspaceFolders(): Map<string, string> {
  const folders = new Map<string, string>();
  for (const pattern of readPackage('.').workspaces ?? []) {
    const candidates = pattern.endsWith('/*')
      ? readdirSync(repoPath(pattern.slice(0, -2)), { withFileTypes: true })
          .filter((entry) => entry.isDirectory())
          .map((entry) => `${pattern.slice(0, -2)}/${entry.name}`)
      : [pattern];
    for (const folder of candidates) {
      if (existsSync(repoPath(`${folder}/package.json`))) folders.set(readPackage(folder).name, folder);
    }
  }
  return folders;
}

/**
 * The workspace folders a service runs from: its own and, transitively, every `@ghostpay/*`
 * package in the `dependencies` of its package.json. npm links them into node_modules as
 * symlinks to their folders, so an image without one of them fails at the first import
 * (ERR_MODULE_NOT_FOUND).
 */
function workspaceClosure(folder: string, folders = workspaceFolders()): string[] {
  const seen = new Set<string>();
  const visit = (current: string) => {
    if (seen.has(current)) return;
    seen.add(current);
    for (const name of Object.keys(readPackage(current).dependencies ?? {})) {
      const dependency = folders.get(name);
      if (dependency !== undefined) visit(dependency);
    }
  };
  visit(folder);
  return [...seen].sort();
}

/** Every `@ghostpay/<name>` a folder's sources import (static, dynamic and re-exports). */
function importedWorkspacePackages(folder: string): Set<string> {
  const found = new Set<string>();
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.name.endsWith('.ts')) {
        for (const match of readFileSync(path, 'utf8').matchAll(/(?:from|import)\s*\(?\s*['"](@ghostpay\/[a-z0-9-]+)/g)) {
          found.add(match[1]!);
        }
      }
    }
  };
  walk(repoPath(`${folder}/src`));
  return found;
}

const workflow = (name: string) => parse(readRepoFile(`.github/workflows/${name}`)) as Workflow;
const runs = (wf: Workflow) => Object.values(wf.jobs).flatMap((job) => job.steps.map((s) => s.run ?? ''));

describe('Dockerfiles', () => {
  it.each(serviceFolders)('%s builds a multi-stage, non-root Node 24 slim image that runs src/main.ts', (folder) => {
    const path = `${folder}/Dockerfile`;
    expect(existsSync(repoPath(path)), path).toBe(true);
    const text = readRepoFile(path);
    const packageName = (JSON.parse(readRepoFile(`${folder}/package.json`)) as { name: string }).name;
    expect(text).toMatch(/^ARG NODE_IMAGE=node:24-slim$/m);
    expect(text.match(/^FROM \$\{NODE_IMAGE\} AS \w+$/gm)).toHaveLength(2);
    expect(text).toContain(`npm ci --omit=dev --workspace ${packageName}`);
    expect(text).toMatch(/^USER node$/m);
    expect(text).toContain('CMD ["node", "src/main.ts"]');
    expect(text).toContain(`COPY ${folder}/ ${folder}/`);
    // Runs from the service folder, after USER: nothing is written at run time.
    expect(text.indexOf('USER node')).toBeGreaterThan(text.lastIndexOf('COPY '));
  });

  it.each(serviceFolders)('%s copies every workspace package its package.json depends on, transitively', (folder) => {
    const copies = new Set([...readRepoFile(`${folder}/Dockerfile`).matchAll(/^COPY (\S+)\/ \1\/$/gm)].map((m) => m[1]));
    const required = workspaceClosure(folder);
    // Not vacuous: every service depends on platform at least.
    expect(required).toContain('platform');
    for (const dependency of required)
      expect(copies, `${folder}/Dockerfile lacks COPY ${dependency}/ ${dependency}/`).toContain(dependency);
  });

  it.each(serviceFolders)('%s declares in its package.json every @ghostpay package its sources import', (folder) => {
    const declared = Object.keys(readPackage(folder).dependencies ?? {});
    const own = readPackage(folder).name;
    for (const name of importedWorkspacePackages(folder)) if (name !== own) expect(declared, `${folder} imports ${name}`).toContain(name);
  });

  it.each(serviceFolders)(
    "%s drops every workspace's devDependencies before npm ci --omit=dev, which installs some of them (npm/cli#6670, and those of its dependencies)",
    (folder) => {
      const workspaces = [...workspaceFolders().values()];
      // Not vacuous: the service and the workspaces it depends on have devDependencies (test-support, platform's pg).
      expect((readPackage(folder) as { devDependencies?: Record<string, string> }).devDependencies).toHaveProperty([
        '@ghostpay/test-support',
      ]);
      expect((readPackage('platform') as { devDependencies?: Record<string, string> }).devDependencies).toHaveProperty('pg');
      withDepsStage(folder, (stage) => {
        for (const workspace of workspaces) {
          const { devDependencies: _, ...rest } = readPackage(workspace) as PackageJson & { devDependencies?: Record<string, string> };
          // Only those: npm ci checks the rest against the lockfile, and the service needs its dependencies.
          expect(
            stage.packageJson(`${workspace}/package.json`),
            `${folder}/Dockerfile hands npm ci ${workspace}'s devDependencies`,
          ).toEqual(rest);
        }
        // The root's stay: they are the lockfile's, and --omit=dev leaves them out.
        expect(stage.packageJson('package.json')).toEqual(readPackage('.'));
      });
    },
  );

  it("runs the router with its Node options, in the image and in its start script, and the chart's memory limit allows for them", () => {
    expect(readRepoFile('router/Dockerfile')).toContain(`NODE_OPTIONS="${routerNodeOptions}"`);
    const scripts = (JSON.parse(readRepoFile('router/package.json')) as { scripts: Record<string, string> }).scripts;
    expect(scripts.start).toBe(`node ${routerNodeOptions} src/main.ts`);
    // The young generation is two semi-spaces of this size, on top of what the router held before.
    const semiSpaceMiB = Number(/--max-semi-space-size=(\d+)/.exec(routerNodeOptions)?.[1]);
    const values = parse(readRepoFile('charts/ghostpay/values.yaml')) as {
      defaults: { resources: { limits: { memory: string } } };
      services: { router: { resources?: { limits: { memory: string } } } };
    };
    const mib = (quantity: string) => Number(quantity.replace(/Mi$/, ''));
    expect(mib(values.services.router.resources?.limits.memory ?? '0')).toBeGreaterThanOrEqual(
      mib(values.defaults.resources.limits.memory) + 2 * semiSpaceMiB,
    );
  });

  it('applies the dependency patches in the router image with the repository’s patch-package version, failing on a stale patch', () => {
    const root = JSON.parse(readRepoFile('package.json')) as { scripts: Record<string, string>; devDependencies: Record<string, string> };
    expect(root.scripts.postinstall).toBe('patch-package');
    const text = readRepoFile('router/Dockerfile');
    expect(text).toContain('COPY patches/ patches/');
    expect(text).toContain(`npx --yes patch-package@${root.devDependencies['patch-package']} --error-on-fail`);
    // After the dependencies are installed, before the runtime stage copies them.
    expect(text.indexOf('patch-package@')).toBeGreaterThan(text.indexOf('npm ci --omit=dev'));
    expect(text.indexOf('patch-package@')).toBeLessThan(text.indexOf('AS runtime'));
  });

  it('keeps node_modules, tests and VCS data out of the build context', () => {
    const ignore = readRepoFile('.dockerignore').split('\n');
    for (const entry of ['**/node_modules', '**/test', '.git', '**/.data']) expect(ignore).toContain(entry);
  });

  it("keeps in the build context what the deps stages copy and mount, and .dockerignore's model excludes what it lists", () => {
    expect(inBuildContext('scripts/docker/drop-dev-dependencies.mjs')).toBe(true);
    expect(inBuildContext('subgraphs/cards/package.json')).toBe(true);
    // Not vacuous: the model excludes by the file's patterns, at any depth and for a folder's contents.
    expect(inBuildContext('subgraphs/cards/test/cards-harness.ts')).toBe(false);
    expect(inBuildContext('node_modules/pg/package.json')).toBe(false);
    expect(inBuildContext('router/src/router.test.ts')).toBe(false);
    expect(inBuildContext('charts/ghostpay/values.yaml')).toBe(false);
  });
});

describe('.ci/run', () => {
  it('stops no process by name: a redis-server or PostgreSQL of someone else on the host is not its to kill', () => {
    const script = readRepoFile('.ci/run')
      .split('\n')
      .filter((line) => !line.trimStart().startsWith('#'));
    expect(script.filter((line) => /\b(pkill|killall)\b|\bkill\b.*\$\(pgrep/.test(line))).toEqual([]);
  });

  it('installs what the tests need and runs the README test command', () => {
    const script = readRepoFile('.ci/run');
    for (const tool of ['redis-server', 'postgresql', 'prometheus', 'openssl']) expect(script).toContain(tool);
    expect(script).toMatch(/^npm test$/m);
  });
});

describe('CI workflow', () => {
  const ci = workflow('ci.yml');
  const commands = runs(ci).join('\n');

  it('runs the README test command', () => {
    expect(readRepoFile('README.md')).toContain('npm test');
    expect(commands).toMatch(/^npm test$/m);
    expect(commands).toContain('npm ci');
  });

  it('lints the chart and validates the rendered manifests with kubeconform', () => {
    expect(commands).toContain('helm lint --strict charts/ghostpay');
    expect(commands).toMatch(/helm template [^\n]*charts\/ghostpay[\s\S]*?\|\s*kubeconform -strict/);
  });

  it('builds every service image', () => {
    expect(ci.jobs.images?.strategy?.matrix.service).toEqual(serviceFolders);
  });
});

describe('deploy workflow', () => {
  const deploy = workflow('deploy.yml');
  const steps = deploy.jobs.deploy!.steps;
  const step = (id: string) => steps.find((s) => s.id === id);

  it('builds and pushes an image per service before deploying', () => {
    const folders = (deploy.jobs.images!.strategy!.matrix.include as { folder: string }[]).map((i) => i.folder);
    expect(folders).toEqual(serviceFolders);
    expect(deploy.jobs.images!.steps.find((s) => s.uses?.startsWith('docker/build-push-action'))?.with?.push).toBe(true);
    expect(deploy.jobs.deploy!.needs).toBe('images');
  });

  it('upgrades only the idle colour, then smoke-tests it with k6 before any traffic moves', () => {
    const install = steps.findIndex((s) => s.run?.includes('colors.$IDLE.imageTag=$TAG'));
    const smoke = steps.findIndex((s) => s.id === 'smoke');
    const canary = steps.findIndex((s) => s.id === 'canary');
    expect(install).toBeGreaterThan(-1);
    expect(steps[install]!.run).toContain('activeColor="$ACTIVE"');
    expect(step('smoke')?.run).toContain('k6/smoke.js');
    expect(smoke).toBeGreaterThan(install);
    expect(canary).toBeGreaterThan(smoke);
  });

  it('steps the canary weight up and switches activeColor', () => {
    expect(step('canary')?.run).toContain('canary.weight="$weight"');
    expect(step('switch')?.run).toContain('activeColor="$IDLE"');
  });

  it('rolls back automatically when the canary or the switched colour fails its checks', () => {
    const rollbacks = steps.filter((s) => s.if?.startsWith('failure()'));
    expect(rollbacks.find((s) => s.if?.includes('steps.canary.outcome'))?.run).toContain('canary.weight=0');
    expect(rollbacks.find((s) => s.if?.includes('steps.switch.outcome'))?.run).toContain('activeColor="$ACTIVE"');
    const checks = steps.find((s) => s.run?.includes('check_color()'))?.run ?? '';
    expect(checks).toContain('readyReplicas');
    expect(checks).toContain('http_request_duration_seconds_count');
  });
});
