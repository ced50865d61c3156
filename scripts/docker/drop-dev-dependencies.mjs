// Drops `devDependencies` from every workspace's package.json under the current directory:
// the deps stage of each service image runs it before `npm ci --omit=dev --workspace <service>`.
//
// With workspaces, --omit=dev still installs devDependencies: those of the target workspace that
// are workspace packages (npm/cli#6670: test-support brings vitest, db brings drizzle-kit), and
// those of the workspaces the target depends on whenever a package is not dev-only in the whole
// tree (platform's devDependency pg reached the bridge and analytics images). npm ci does not
// check a workspace's devDependencies against the lockfile, so dropping them from these copies
// leaves the install otherwise as locked; the image's runtime stage copies the real files.
//
// Plain Node, no dependencies (it runs before any are installed). The workspaces come from the
// root package.json's `workspaces` (a folder, or `folder/*`); the root's own devDependencies stay.
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const readJson = (file) => JSON.parse(readFileSync(file, 'utf8'));

const { workspaces } = readJson('package.json');
if (!Array.isArray(workspaces)) throw new Error('drop-dev-dependencies: ./package.json has no "workspaces" list');

const folders = workspaces.flatMap((pattern) => {
  if (!pattern.includes('*')) return [pattern];
  if (!pattern.endsWith('/*') || pattern.slice(0, -2).includes('*'))
    throw new Error(`drop-dev-dependencies: workspace pattern ${pattern} is neither a folder nor folder/*`);
  const parent = pattern.slice(0, -2);
  return readdirSync(parent, { withFileTypes: true })
    .filter((entry) => entry.isDirectory())
    .map((entry) => join(parent, entry.name));
});

let dropped = 0;
for (const folder of folders) {
  const file = join(folder, 'package.json');
  // npm ci fails on a listed workspace without its package.json; a glob's extra folder is no workspace.
  if (!existsSync(file)) continue;
  const manifest = readJson(file);
  if (manifest.devDependencies === undefined) continue;
  delete manifest.devDependencies;
  writeFileSync(file, `${JSON.stringify(manifest, null, 2)}\n`);
  dropped += 1;
}
console.log(`drop-dev-dependencies: dropped the devDependencies of ${dropped} of ${folders.length} workspaces`);
