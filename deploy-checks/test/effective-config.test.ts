/**
 * Each service's entry point (what its image runs) logs its effective configuration once at
 * start-up, as platform's `logEffectiveConfig` shows it: defaults included, credentials in URLs
 * censored, secret variables `[redacted]`. The line comes right after the logger is made, before
 * any connection, so a process pointed at nothing still writes it.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { repoPath } from '../src/repo.ts';

const password = 'hunter2-not-a-real-password';
const dataDir = mkdtempSync(join(tmpdir(), 'ghostpay-effective-config-'));
afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

/** Closed loopback ports: nothing answers, so a service that connects fails after the line. */
const common = {
  NODE_ENV: 'production',
  HOST: '127.0.0.1',
  GHOSTPAY_DATA_DIR: dataDir,
  JWKS_URL: 'http://127.0.0.1:9/.well-known/jwks.json',
  OTEL_SDK_DISABLED: 'true',
};
const services: { name: string; entry: string; env: Record<string, string>; urlVariable: string; shown?: Record<string, unknown> }[] = [
  {
    name: 'charges',
    entry: 'subgraphs/charges/src/main.ts',
    env: { CHARGES_PORT: '0', DATABASE_URL: `postgres://ghostpay:${password}@127.0.0.1:9/ghostpay` },
    urlVariable: 'DATABASE_URL',
  },
  {
    name: 'cards',
    entry: 'subgraphs/cards/src/main.ts',
    env: { CARDS_PORT: '0', DATABASE_URL: `postgres://ghostpay:${password}@127.0.0.1:9/ghostpay` },
    urlVariable: 'DATABASE_URL',
  },
  {
    name: 'auth',
    entry: 'subgraphs/auth/src/main.ts',
    env: { AUTH_PORT: '0', DATABASE_URL: `postgres://ghostpay:${password}@127.0.0.1:9/ghostpay` },
    urlVariable: 'DATABASE_URL',
  },
  {
    name: 'analytics',
    entry: 'subgraphs/analytics/src/main.ts',
    env: { ANALYTICS_PORT: '0', MONGODB_URL: `mongodb://ghostpay:${password}@127.0.0.1:9/?serverSelectionTimeoutMS=100` },
    urlVariable: 'MONGODB_URL',
  },
  {
    name: 'router',
    entry: 'router/src/main.ts',
    env: { ROUTER_PORT: '0', REDIS_URL: `redis://default:${password}@127.0.0.1:9` },
    urlVariable: 'REDIS_URL',
    // Its subscriptions settings are their own schema, in the same line.
    shown: {
      ROUTER_SUBSCRIPTION_UPSTREAM_SOCKET_CAPACITY: 500,
      ROUTER_SUBSCRIPTIONS: true,
      // Limits named after a credential are numbers, not [redacted] (platform's logger, fd1c81b).
      ROUTER_SUBSCRIPTION_MAX_PER_API_KEY: 200,
      ROUTER_MAX_TOKENS: 2000,
    },
  },
  {
    name: 'openapi-bridge',
    entry: 'openapi-bridge/src/main.ts',
    env: { BRIDGE_PORT: '0', ROUTER_URL: `http://bridge:${password}@127.0.0.1:9/graphql` },
    urlVariable: 'ROUTER_URL',
  },
];

/** Runs `entry` until its `effective configuration` line (or its exit) and returns everything it printed. */
async function untilEffectiveConfig(
  entry: string,
  env: Record<string, string>,
): Promise<{ output: string; line?: Record<string, unknown> }> {
  const child: ChildProcess = spawn(process.execPath, [repoPath(entry)], {
    cwd: dataDir,
    env: { PATH: process.env.PATH ?? '', HOME: dataDir, ...common, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  try {
    return await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no effective configuration line from ${entry}:\n${output}`)), 30_000);
      const onData = (chunk: Buffer) => {
        output += chunk.toString('utf8');
        for (const text of output.split('\n')) {
          if (!text.includes('"effective configuration"')) continue;
          clearTimeout(timer);
          resolve({ output, line: JSON.parse(text) });
          return;
        }
      };
      child.stdout?.on('data', onData);
      child.stderr?.on('data', onData);
      child.once('exit', () => {
        clearTimeout(timer);
        resolve({ output });
      });
    });
  } finally {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGKILL');
      await exited;
    }
  }
}

describe('the effective configuration line at start-up', () => {
  it.each(services)('$name logs its configuration once, defaults included, without the credential in $urlVariable', async (service) => {
    const { output, line } = await untilEffectiveConfig(service.entry, service.env);
    expect(line, output).toBeDefined();
    expect(line).toMatchObject({ level: 30, service: service.name, msg: 'effective configuration' });
    const config = line?.config as Record<string, unknown>;
    // Defaults the environment did not set are there, as parsed.
    expect(config.SHUTDOWN_TIMEOUT_MS).toBe(10_000);
    expect(config.MAX_CONNECTIONS).toBe(10_000);
    expect(config.NODE_ENV).toBe('production');
    expect(config).toMatchObject(service.shown ?? {});
    // The URL is shown, its credential is not: not in the line, not anywhere in what was printed.
    expect(config[service.urlVariable]).toEqual(expect.stringContaining('127.0.0.1:9'));
    expect(config[service.urlVariable]).not.toContain(password);
    expect(output).not.toContain(password);
  });
});
