import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger, createSecretsProvider, type Logger, type SecretsProvider } from '../src/index.ts';

const providers: SecretsProvider[] = [];
const dirs: string[] = [];
afterEach(() => {
  for (const provider of providers.splice(0)) provider.close();
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function secretsDir(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'ghostpay-secrets-'));
  dirs.push(dir);
  // Readable by the owner only, as a secret volume should be (see the permissions test).
  for (const [name, value] of Object.entries(files)) writeFileSync(join(dir, name), value, { mode: 0o600 });
  return dir;
}

function provider(dir: string, env: Record<string, string> = {}, logger?: Pick<Logger, 'warn' | 'info'>): SecretsProvider {
  const created = createSecretsProvider({ dir, env, pollIntervalMs: 20, logger });
  providers.push(created);
  return created;
}

/** Waits until `check` passes (the poller runs every 20 ms here). */
async function eventually(check: () => void, ms = 2_000): Promise<void> {
  const until = Date.now() + ms;
  for (;;) {
    try {
      check();
      return;
    } catch (error) {
      if (Date.now() > until) throw error;
      await new Promise((done) => setTimeout(done, 10));
    }
  }
}

describe('secrets from a directory', () => {
  it('reads one file per secret (trimmed), skips dot entries, and falls back to the env', () => {
    const dir = secretsDir({ 'signing-kek': 'kek-value\n', '..data': 'not a secret' });
    mkdirSync(join(dir, 'nested'));
    const secrets = provider(dir, { GHOSTPAY_SECRET_PAN_ENCRYPTION_KEYS: 'from-env' });
    expect(secrets.get('signing-kek')).toBe('kek-value');
    expect(secrets.get('..data')).toBeUndefined();
    expect(secrets.get('nested')).toBeUndefined();
    expect(secrets.get('pan-encryption-keys')).toBe('from-env');
    expect(() => secrets.require('missing')).toThrow(
      /secret "missing" is not available: provide file .*missing or env GHOSTPAY_SECRET_MISSING/,
    );
  });

  it('in production, says once per secret (name, never value) that it came from the env', () => {
    const warnings: unknown[][] = [];
    const logger = { warn: (...args: unknown[]) => warnings.push(args), info: () => {} };
    const env = { GHOSTPAY_SECRET_CVC_KEY: 'cvc-secret-value', NODE_ENV: 'production' };
    const secrets = createSecretsProvider({ dir: secretsDir({ 'signing-kek': 'from-file' }), env, logger });
    providers.push(secrets);
    expect(secrets.get('cvc-key')).toBe('cvc-secret-value');
    expect(secrets.require('cvc-key')).toBe('cvc-secret-value');
    expect(secrets.get('signing-kek')).toBe('from-file');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]?.[0]).toEqual({ secretName: 'cvc-key', env: 'GHOSTPAY_SECRET_CVC_KEY' });
    expect(JSON.stringify(warnings)).not.toContain('cvc-secret-value');
    // Development (or tests): no warning.
    const quiet: unknown[] = [];
    const dev = createSecretsProvider({
      env: { GHOSTPAY_SECRET_CVC_KEY: 'x' },
      logger: { warn: (...a: unknown[]) => quiet.push(a), info: () => {} },
    });
    providers.push(dev);
    expect(dev.get('cvc-key')).toBe('x');
    expect(quiet).toEqual([]);
  });

  it('warns once per file and mode, naming it but never its value, when other users may read or write a secret file', async () => {
    const warnings: unknown[][] = [];
    const logger = { warn: (...args: unknown[]) => warnings.push(args), info: () => {} };
    const dir = secretsDir({ 'signing-kek': 'kek-perm-value', 'pan-encryption-keys': 'pan-perm-value', 'cvc-key': 'cvc-perm-value' });
    chmodSync(join(dir, 'signing-kek'), 0o644);
    chmodSync(join(dir, 'pan-encryption-keys'), 0o440);
    chmodSync(join(dir, 'cvc-key'), 0o602);
    const secrets = provider(dir, {}, logger);
    // Still served: the warning is the operator's to act on.
    expect(secrets.get('signing-kek')).toBe('kek-perm-value');
    expect(warnings).toHaveLength(2);
    expect(warnings.map(([fields]) => fields)).toEqual(
      expect.arrayContaining([
        { secretName: 'signing-kek', dir, mode: '0644' },
        { secretName: 'cvc-key', dir, mode: '0602' },
      ]),
    );
    // Re-reads (the poller runs every 20 ms) do not repeat it; a changed mode is told again.
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(warnings).toHaveLength(2);
    chmodSync(join(dir, 'signing-kek'), 0o604);
    await eventually(() => expect(warnings).toHaveLength(3));
    expect(warnings[2]?.[0]).toEqual({ secretName: 'signing-kek', dir, mode: '0604' });
    expect(JSON.stringify(warnings)).not.toMatch(/perm-value/);
  });

  it('refuses a directory that is not there at start', () => {
    expect(() => createSecretsProvider({ dir: join(tmpdir(), 'ghostpay-no-such-secrets-dir') })).toThrow(/ENOENT/);
  });

  it('picks up a changed file and tells the listeners', async () => {
    const dir = secretsDir({ 'signing-kek': 'one' });
    const secrets = provider(dir);
    const seen: (string | undefined)[] = [];
    secrets.onChange('signing-kek', (value) => seen.push(value));
    writeFileSync(join(dir, 'signing-kek'), 'two');
    await eventually(() => expect(secrets.get('signing-kek')).toBe('two'));
    expect(seen).toEqual(['two']);
  });

  it('keeps the last values, without an uncaught exception, while the directory is gone, and reads it again when it is back', async () => {
    const dir = secretsDir({ 'signing-kek': 'one' });
    const lines: string[] = [];
    const logger = createLogger({ service: 'secrets-test', destination: { write: (line: string) => lines.push(line) } });
    const secrets = provider(dir, {}, logger);
    const seen: (string | undefined)[] = [];
    secrets.onChange('signing-kek', (value) => seen.push(value));
    const uncaught: unknown[] = [];
    const record = (error: unknown) => uncaught.push(error);
    process.on('uncaughtException', record);
    try {
      rmSync(dir, { recursive: true, force: true });
      // Several polls and the watch event of the removal, each failing to read the directory.
      await new Promise((done) => setTimeout(done, 200));
      expect(uncaught).toEqual([]);
      expect(secrets.get('signing-kek')).toBe('one');
      expect(seen).toEqual([]);
      mkdirSync(dir);
      writeFileSync(join(dir, 'signing-kek'), 'three', { mode: 0o600 });
      await eventually(() => expect(secrets.get('signing-kek')).toBe('three'));
      expect(seen).toEqual(['three']);
      expect(uncaught).toEqual([]);
      // Told once that it could not read (not once per poll), once that it can again, and no value.
      const logged = lines.map((line) => JSON.parse(line) as { level: number; msg: string; dir: string });
      expect(logged.map(({ level, msg, dir: where }) => [level, msg, where])).toEqual([
        [40, 'secrets directory cannot be read; keeping the last values', dir],
        [30, 'secrets directory readable again', dir],
      ]);
      expect(lines.join('')).not.toMatch(/"one"|"three"/);
    } finally {
      process.off('uncaughtException', record);
    }
  });
});
