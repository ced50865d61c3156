/**
 * What stops a start, and how: one stack per data directory, a port in use, a bad variable, a
 * data directory that cannot be one. Each is refused with a message saying what to do, before
 * anything is left half-started, and leaves the data directory free for the next start.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createLogger } from '@ghostpay/platform';
import { spawnLockHolder } from '@ghostpay/test-support';
import { afterAll, describe, expect, it } from 'vitest';
import { DataDirInUseError, dataDirLockFile, StackStartError, startStack } from '../src/index.ts';

const main = fileURLToPath(new URL('../src/main.ts', import.meta.url));
const root = mkdtempSync(join(tmpdir(), 'ghostpay-start-errors-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const env = { ...process.env, DATABASE_URL: undefined, SECRETS_DIR: undefined, REDIS_URL: undefined, MONGODB_URL: undefined };
const start = (dataDir: string, extra: Record<string, string> = {}) =>
  startStack({ dataDir, env: { ...env, ...extra }, randomPorts: true, logger: createLogger({ service: 'stack-test', level: 'silent' }) });

describe('one stack per data directory', () => {
  it('refuses a second start while the first runs, and starts again once it stopped or its process is gone', async () => {
    // A directory that does not exist yet: created for its owner only.
    const dataDir = join(root, 'nested', 'data');
    const first = await start(dataDir);
    try {
      expect(statSync(dataDir).mode & 0o777).toBe(0o700);
      const second = start(dataDir);
      await expect(second).rejects.toThrow(DataDirInUseError);
      await expect(second).rejects.toThrow(
        `${dataDir} is in use by another GhostPay stack: its lock file ${join(dataDir, dataDirLockFile)} names process ${process.pid} (this one)`,
      );
      // The refused start touched nothing of the running one.
      expect((await fetch(`${first.urls.router}/readyz`)).status).toBe(200);
      const token = await fetch(`${first.urls.bridge}/auth/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ api_key: first.credentials.merchant.apiKey }),
      });
      expect(token.status).toBe(200);
    } finally {
      await first.close();
    }
    expect(existsSync(join(dataDir, dataDirLockFile))).toBe(false);

    // A lock naming another live process refuses the start, with its pid.
    const holder = await spawnLockHolder({ kind: 'process-lock', path: join(dataDir, dataDirLockFile) });
    try {
      await expect(start(dataDir)).rejects.toThrow(`names process ${holder.pid},`);
    } finally {
      await holder.kill();
    }
    // The same lock once that process is gone (a crash, SIGKILL) is stale: taken over.
    const again = await start(dataDir);
    try {
      expect(again.firstStart).toBe(false);
    } finally {
      await again.close();
    }
    expect(existsSync(join(dataDir, dataDirLockFile))).toBe(false);
  }, 120_000);
});

describe('a start that cannot go on', () => {
  it('a port in use: npm start prints one line naming its variable, no stack trace, exits 1 and frees the data directory', async () => {
    const dataDir = join(root, 'port-in-use');
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const { port } = taken.address() as { port: number };
    const childEnv: Record<string, string | undefined> = { ...env, GHOSTPAY_DATA_DIR: dataDir, LOG_LEVEL: 'warn', NODE_ENV: undefined };
    for (const name of ['ROUTER_PORT', 'AUTH_PORT', 'CHARGES_PORT', 'ANALYTICS_PORT', 'BRIDGE_PORT']) childEnv[name] = '0';
    childEnv.CARDS_PORT = String(port);
    try {
      const child = spawn(process.execPath, [main], { env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
      child.stdout.resume();
      const [code] = await once(child, 'exit');
      expect(stderr).toContain(`npm start: cannot listen on 127.0.0.1:${port} (CARDS_PORT): the port is in use`);
      expect(stderr).not.toMatch(/^\s+at /m);
      expect(code).toBe(1);
    } finally {
      taken.close();
    }
    expect(existsSync(join(dataDir, dataDirLockFile))).toBe(false);
    // What it started before the cards port (the database, auth) was stopped: the next start has it.
    const next = await start(dataDir);
    await next.close();
  }, 120_000);

  it('the analytics port in use: the analytics store opened for it is closed too, so the next start in this process has it', async () => {
    const dataDir = join(root, 'analytics-port-in-use');
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const { port } = taken.address() as { port: number };
    const ports: Record<string, string> = { ANALYTICS_PORT: String(port) };
    for (const name of ['ROUTER_PORT', 'AUTH_PORT', 'CARDS_PORT', 'CHARGES_PORT', 'BRIDGE_PORT']) ports[name] = '0';
    try {
      const started = startStack({ dataDir, env: { ...env, ...ports }, logger: createLogger({ service: 'stack-test', level: 'silent' }) });
      await expect(started).rejects.toThrow(`cannot listen on 127.0.0.1:${port} (ANALYTICS_PORT): the port is in use`);
    } finally {
      taken.close();
    }
    expect(existsSync(join(dataDir, 'analytics.lock'))).toBe(false);
    const next = await start(dataDir);
    await next.close();
  }, 120_000);

  it('a bad variable: every problem of every service listed before anything is opened or started', async () => {
    const dataDir = join(root, 'bad-variable');
    const started = start(dataDir, { ROUTER_PORT: 'abc', CARDS_PORT: '70000' });
    await expect(started).rejects.toThrow(StackStartError);
    const message = await started.catch((error: Error) => error.message);
    expect(message).toMatch(/^invalid configuration\n/);
    expect(message).toContain('router: ROUTER_PORT');
    expect(message).toContain('cards: CARDS_PORT');
    expect(existsSync(join(dataDir, 'pglite'))).toBe(false);
    expect(existsSync(join(dataDir, dataDirLockFile))).toBe(false);
  });

  it('a data directory that is a file: says so and what to set', async () => {
    const file = join(root, 'a-file');
    writeFileSync(file, '');
    const started = start(file);
    await expect(started).rejects.toThrow(StackStartError);
    await expect(started).rejects.toThrow(`cannot use ${file} as the data directory (ENOTDIR): set GHOSTPAY_DATA_DIR`);
  });
});
