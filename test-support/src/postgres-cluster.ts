import { execFile, execFileSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from './free-port.ts';

const run = promisify(execFile);

/** The newest `/usr/lib/postgresql/<version>/bin` with initdb and pg_ctl, if any. */
export function findPostgresBin(): string | undefined {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root)
    .filter((v) => existsSync(join(root, v, 'bin', 'initdb')) && existsSync(join(root, v, 'bin', 'pg_ctl')))
    .sort((a, b) => Number(b) - Number(a));
  return versions[0] ? join(root, versions[0], 'bin') : undefined;
}

export interface PostgresCluster {
  /** Superuser URL to the `postgres` database. */
  readonly url: string;
  readonly port: number;
  readonly dataDir: string;
  /** A URL for another database on the same cluster. */
  urlFor(database: string): string;
  /** `pg_ctl stop -m <mode>` (immediate = crash). */
  stop(mode?: 'smart' | 'fast' | 'immediate'): Promise<void>;
  start(): Promise<void>;
  /** Stops the server and removes its files. */
  destroy(): Promise<void>;
}

/**
 * Starts a throwaway PostgreSQL cluster in a temp dir on a free loopback port. PostgreSQL
 * refuses to run as root, so as root the cluster belongs to the `postgres` user and the
 * binaries run through `runuser`.
 */
export async function startPostgresCluster(options: { bin?: string; maxConnections?: number } = {}): Promise<PostgresCluster> {
  const bin = options.bin ?? findPostgresBin();
  if (!bin) throw new Error('PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin');
  const asRoot = process.getuid?.() === 0;
  const base = mkdtempSync(join(tmpdir(), 'ghostpay-pg-'));
  const dataDir = join(base, 'data');
  if (asRoot) {
    const uid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim());
    chownSync(base, uid, gid);
  }
  chmodSync(base, 0o700);
  const exec = (cmd: string, args: string[]) =>
    asRoot ? run('runuser', ['-u', 'postgres', '--', join(bin, cmd), ...args]) : run(join(bin, cmd), args);

  await exec('initdb', ['-D', dataDir, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-locale', '--no-sync']);
  const port = await freePort();
  const serverOptions = [
    `-p ${port}`,
    `-k ${base}`,
    '-c listen_addresses=127.0.0.1',
    `-c max_connections=${options.maxConnections ?? 400}`,
    // A throwaway cluster: durability off for speed. Crash tests use `stop -m immediate`,
    // which kills the server, not the OS, so committed data is still in the page cache.
    '-c fsync=off',
    '-c full_page_writes=off',
    '-c shared_buffers=128MB',
  ].join(' ');
  const start = () =>
    exec('pg_ctl', ['-D', dataDir, '-o', serverOptions, '-l', join(base, 'server.log'), '-w', '-t', '60', 'start']).then(() => {});
  await start();
  const urlFor = (database: string) => `postgres://postgres@127.0.0.1:${port}/${database}`;
  return {
    url: urlFor('postgres'),
    port,
    dataDir,
    urlFor,
    start,
    async stop(mode = 'fast') {
      await exec('pg_ctl', ['-D', dataDir, '-m', mode, '-w', 'stop']);
    },
    async destroy() {
      await exec('pg_ctl', ['-D', dataDir, '-m', 'immediate', '-w', 'stop']).catch(() => {});
      rmSync(base, { recursive: true, force: true });
    },
  };
}
