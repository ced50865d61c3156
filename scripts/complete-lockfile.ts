/**
 * The registry this project installs from serves only the Linux x64 builds of
 * platform-specific optional packages (biome, turbo, esbuild, ...), so npm leaves the other
 * platforms out of package-lock.json and `npm ci` then refuses the lockfile as out of sync.
 * This adds each missing optional platform package as an `optional` entry with its `os`/`cpu`,
 * which is what npm itself records; `npm ci` skips them on other platforms.
 * Run after `npm install` changes the lockfile: `node scripts/complete-lockfile.ts`.
 */
import { readFileSync, writeFileSync } from 'node:fs';

const path = new URL('../package-lock.json', import.meta.url);
const lock = JSON.parse(readFileSync(path, 'utf8'));
const packages: Record<string, Record<string, unknown>> = lock.packages;

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

let added = 0;
for (const [location, entry] of Object.entries(packages)) {
  const optional = entry.optionalDependencies as Record<string, string> | undefined;
  if (!optional || !location.startsWith('node_modules/')) continue;
  for (const [name, version] of Object.entries(optional)) {
    const nested = `${location}/node_modules/${name}`;
    const hoisted = `node_modules/${name}`;
    if (packages[nested] || packages[hoisted]) continue;
    const platform = platformOf(name);
    if (!platform) continue;
    packages[hoisted] = { version, ...(entry.dev ? { dev: true } : {}), optional: true, ...platform };
    added++;
  }
}
lock.packages = Object.fromEntries(Object.entries(packages).sort(([a], [b]) => (a === '' ? -1 : b === '' ? 1 : a.localeCompare(b))));
writeFileSync(path, `${JSON.stringify(lock, null, 2)}\n`);
process.stdout.write(`complete-lockfile: added ${added} optional platform entries\n`);
