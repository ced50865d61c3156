/**
 * The registry this project installs from serves only the Linux x64 builds of
 * platform-specific optional packages (biome, turbo, esbuild, ...), so npm leaves the other
 * platforms out of package-lock.json and `npm ci` then refuses the lockfile as out of sync.
 * This adds each missing optional platform package as an `optional` entry with its `os`/`cpu`,
 * which is what npm itself records; `npm ci` skips them on other platforms.
 * Run after `npm install` changes the lockfile: `node scripts/complete-lockfile.ts` (or give
 * another lockfile's path).
 *
 * Each entry goes where Node will find it from the package that wants it, at that package's
 * version: a package nested under another (`node_modules/drizzle-kit/node_modules/esbuild`
 * 0.25) whose platform package is found higher up at another version (the root esbuild's
 * 0.28) gets its own copy beside it (`node_modules/drizzle-kit/node_modules/@esbuild/…`), or
 * esbuild would refuse to run there ("Host version does not match binary version"). An
 * optional dependency given as a range, not an exact version, cannot be written down without the
 * registry: the script names it and exits 1 without writing.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const path = process.argv[2] ? resolve(process.argv[2]) : fileURLToPath(new URL('../package-lock.json', import.meta.url));

function fail(message: string): never {
  process.stderr.write(`complete-lockfile: ${message}\n`);
  process.exit(1);
}

let lock: { packages?: Record<string, Record<string, unknown>> };
try {
  lock = JSON.parse(readFileSync(path, 'utf8'));
} catch (error) {
  fail(`cannot read ${path}: ${(error as Error).message}`);
}
if (!lock.packages || typeof lock.packages !== 'object') fail(`${path} has no "packages" (lockfileVersion 2 or 3 expected)`);
const packages = lock.packages;

const osNames = ['darwin', 'linux', 'win32', 'android', 'freebsd', 'openbsd', 'netbsd', 'sunos', 'aix', 'openharmony'];
const cpuNames = ['x64', 'arm64', 'arm', 'ia32', 'ppc64', 's390x', 'riscv64', 'loong64', 'mips64el'];

function platformOf(name: string): { os?: string[]; cpu?: string[]; libc?: string[] } | undefined {
  const tail = name.split('/').pop() ?? name;
  const parts = tail.split('-');
  let os = osNames.find((o) => parts.includes(o));
  if (!os && parts.includes('windows')) os = 'win32';
  if (!os && parts.includes('win')) os = 'win32';
  let cpu = cpuNames.find((c) => parts.includes(c));
  if (!cpu && parts.includes('64')) cpu = 'x64';
  if (!os && !cpu) return undefined;
  const result: { os?: string[]; cpu?: string[]; libc?: string[] } = {};
  if (os) result.os = [os];
  if (cpu) result.cpu = [cpu];
  if (parts.includes('musl')) result.libc = ['musl'];
  else if (os === 'linux' && parts.includes('gnu')) result.libc = ['glibc'];
  return result;
}

/** Where Node looks for `name` from the package at `location`, nearest first: its own node_modules, then each ancestor's. */
function lookupPaths(location: string, name: string): string[] {
  const paths: string[] = [];
  let base = location;
  for (;;) {
    paths.push(`${base}/node_modules/${name}`);
    const cut = base.lastIndexOf('/node_modules/');
    if (cut < 0) break;
    base = base.slice(0, cut);
  }
  // The root's own node_modules.
  paths.push(`node_modules/${name}`);
  return [...new Set(paths)];
}

const exactVersion = /^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$/;
const depth = (location: string) => location.split('node_modules/').length;

let added = 0;
const unresolved: string[] = [];
// Shallower packages first, so the root's platform packages take the root's node_modules as npm lays them out.
const wanting = Object.entries(packages)
  .filter(([location, entry]) => location.startsWith('node_modules/') && entry.optionalDependencies)
  .sort(([a], [b]) => depth(a) - depth(b) || a.localeCompare(b));
for (const [location, entry] of wanting) {
  for (const [name, version] of Object.entries(entry.optionalDependencies as Record<string, string>)) {
    const platform = platformOf(name);
    if (!platform) continue;
    const paths = lookupPaths(location, name);
    const found = paths.findIndex((candidate) => packages[candidate]);
    if (found >= 0 && packages[paths[found] as string]?.version === version) continue;
    if (!exactVersion.test(version)) {
      unresolved.push(`${location} wants ${name}@${version}`);
      continue;
    }
    // Not found: the root's node_modules. Found at another version: just nearer than that one.
    const target = found < 0 ? (paths[paths.length - 1] as string) : found > 0 ? (paths[found - 1] as string) : undefined;
    if (!target) {
      unresolved.push(`${location} has ${name}@${String(packages[paths[0] as string]?.version)} in its own node_modules, wants ${version}`);
      continue;
    }
    packages[target] = { version, ...(entry.dev ? { dev: true } : {}), optional: true, ...platform };
    added++;
  }
}
if (unresolved.length > 0) {
  fail(`nothing written; these need the registry (npm install on that platform) or an exact version:\n  ${unresolved.join('\n  ')}`);
}
lock.packages = Object.fromEntries(Object.entries(packages).sort(([a], [b]) => (a === '' ? -1 : b === '' ? 1 : a.localeCompare(b))));
writeFileSync(path, `${JSON.stringify(lock, null, 2)}\n`);
process.stdout.write(`complete-lockfile: added ${added} optional platform entries\n`);
