/**
 * Ctrl-C or SIGTERM while `npm start` is still starting: what had started is stopped in order
 * (the servers closed, PGlite closed, the locks released), the process exits 128 + the signal's
 * number, and the data directory can be started again at once.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createLogger } from '@ghostpay/platform';
import { freePort } from '@ghostpay/test-support';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { dataDirLockFile, startStack } from '../src/index.ts';

const main = fileURLToPath(new URL('../src/main.ts', import.meta.url));
const root = mkdtempSync(join(tmpdir(), 'ghostpay-start-signals-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const children: ChildProcess[] = [];
afterEach(() => {
  for (const child of children.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
});

interface LogLine {
  service?: string;
  msg?: string;
}

/**
 * Starts `npm start` (src/main.ts) on `dataDir` at log level info, sends `signal` once a line
 * matches `when`, and returns its exit and what it logged.
 */
async function interruptStart(dataDir: string, signal: NodeJS.Signals, when: (line: LogLine) => boolean) {
  const env: Record<string, string | undefined> = {
    ...process.env,
    GHOSTPAY_DATA_DIR: dataDir,
    LOG_LEVEL: 'info',
    // A loopback port nothing listens on: a Redis there is never ready, so the start waits for it
    // (up to 5 s) before the router.
    REDIS_URL: `redis://127.0.0.1:${await freePort()}`,
  };
  // NODE_ENV as a shell gives it (unset), as npm-start.test.ts explains.
  for (const name of ['DATABASE_URL', 'MONGODB_URL', 'SECRETS_DIR', 'NODE_ENV']) delete env[name];
  for (const name of ['ROUTER_PORT', 'AUTH_PORT', 'CARDS_PORT', 'CHARGES_PORT', 'ANALYTICS_PORT', 'BRIDGE_PORT']) env[name] = '0';
  const child = spawn(process.execPath, [main], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  const lines: LogLine[] = [];
  let stdout = '';
  let stderr = '';
  let sent = false;
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk;
    const whole = stdout.lastIndexOf('\n');
    if (whole === -1) return;
    for (const text of stdout.slice(0, whole).split('\n')) {
      // The banner, if the start finished first, is not JSON.
      const line = (text.startsWith('{') ? JSON.parse(text) : { msg: text }) as LogLine;
      lines.push(line);
      if (!sent && when(line)) {
        sent = true;
        child.kill(signal);
      }
    }
    stdout = stdout.slice(whole + 1);
  });
  const [code, killedBy] = (await once(child, 'exit')) as [number | null, NodeJS.Signals | null];
  expect(sent, `the start ended before the awaited line:\n${stderr}`).toBe(true);
  return { code, killedBy, lines, stderr };
}

const shutDown = (lines: LogLine[]) => lines.filter((line) => line.msg === 'shut down').map((line) => line.service);

/** The data directory is free: no lock left, and a start on it in this process opens PGlite and serves. */
async function startsAgain(dataDir: string) {
  expect(existsSync(join(dataDir, dataDirLockFile))).toBe(false);
  expect(existsSync(join(dataDir, 'pglite.lock'))).toBe(false);
  const env = { ...process.env, DATABASE_URL: undefined, SECRETS_DIR: undefined, REDIS_URL: undefined, MONGODB_URL: undefined };
  const stack = await startStack({ dataDir, env, randomPorts: true, logger: createLogger({ service: 'stack-test', level: 'silent' }) });
  try {
    expect(stack.database.kind).toBe('pglite');
    expect((await fetch(`${stack.urls.router}/readyz`)).status).toBe(200);
    const token = await fetch(`${stack.urls.bridge}/auth/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ api_key: stack.credentials.merchant.apiKey }),
    });
    expect(token.status).toBe(200);
  } finally {
    await stack.close();
  }
}

describe('a signal while npm start is starting', () => {
  it('Ctrl-C once every subgraph listens: stops them and the database, exits 130, and the directory starts again', async () => {
    const dataDir = join(root, 'subgraphs-up');
    const run = await interruptStart(dataDir, 'SIGINT', (line) => line.service === 'analytics' && line.msg === 'listening');
    expect(run.stderr).toContain('npm start: stopped by SIGINT while starting');
    expect(run.stderr).not.toMatch(/^\s+at /m);
    expect({ code: run.code, signal: run.killedBy }).toEqual({ code: 130, signal: null });
    // Each server closed (in reverse order of start; each service's logger buffers its own
    // lines, so their order on stdout is not the order they were written in).
    expect(shutDown(run.lines).sort()).toEqual(['analytics', 'auth', 'cards', 'charges']);
    await startsAgain(dataDir);
  }, 120_000);

  it('SIGTERM while the database is first created: closes it, exits 143, and the directory starts again', async () => {
    const dataDir = join(root, 'database-creating');
    // The last line before PGlite's data directory is created and migrated.
    const run = await interruptStart(dataDir, 'SIGTERM', (line) => line.msg === 'created development secrets');
    expect(run.stderr).toContain('npm start: stopped by SIGTERM while starting');
    expect({ code: run.code, signal: run.killedBy }).toEqual({ code: 143, signal: null });
    expect(shutDown(run.lines)).toEqual([]);
    await startsAgain(dataDir);
  }, 120_000);
});
