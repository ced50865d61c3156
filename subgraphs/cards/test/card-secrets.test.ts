import { type SpawnSyncReturns, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { envNameForSecret } from '@ghostpay/platform';
import { describe, expect, it } from 'vitest';
import { createPanSecrets, minCardKeyBytes } from '../src/pan-crypto.ts';
import { randomCardSecrets, secretsFrom } from './cards-harness.ts';

const mainPath = fileURLToPath(new URL('../src/main.ts', import.meta.url));

describe('pan-fingerprint-key and cvc-key', () => {
  it('are served when each is at least 32 random bytes and they differ', () => {
    const values = randomCardSecrets();
    const panSecrets = createPanSecrets(secretsFrom(values).provider);
    expect(panSecrets.fingerprintKey()).toBe(values['pan-fingerprint-key']);
    expect(panSecrets.cvcKey()).toBe(values['cvc-key']);
    // 32 random bytes in hex (64 characters) too.
    const hex = randomBytes(32).toString('hex');
    expect(createPanSecrets(secretsFrom({ ...values, 'cvc-key': hex }).provider).cvcKey()).toBe(hex);
  });

  it.each([
    ['pan-fingerprint-key', 'fingerprintKey'],
    ['cvc-key', 'cvcKey'],
  ] as const)('refuse a short %s (a guessable one gives PANs or CVCs away), without echoing it', (name, accessor) => {
    for (const weak of ['hunter2', 'changeme', 'x'.repeat(minCardKeyBytes - 1), randomBytes(16).toString('hex').slice(0, 31)]) {
      const panSecrets = createPanSecrets(secretsFrom({ ...randomCardSecrets(), [name]: weak }).provider);
      let message = '';
      try {
        panSecrets[accessor]();
      } catch (error) {
        message = (error as Error).message;
      }
      expect(message).toContain(name);
      expect(message).toContain('at least 32 bytes');
      expect(message).not.toContain(weak);
    }
  });

  it('refuse a cvc-key that is a copy of the pan-fingerprint-key', () => {
    const values = randomCardSecrets();
    const panSecrets = createPanSecrets(secretsFrom({ ...values, 'cvc-key': values['pan-fingerprint-key'] }).provider);
    expect(() => panSecrets.cvcKey()).toThrow('secret cvc-key must differ from pan-fingerprint-key');
    expect(panSecrets.fingerprintKey()).toBe(values['pan-fingerprint-key']);
  });

  it('stop the service at start with one line naming the short key, never its value', () => {
    const values = { ...randomCardSecrets(), 'pan-fingerprint-key': 'fingerprint-key-2024' };
    // A service that does start (the old check) opens PGlite here, not in the checkout, and is killed.
    const dataDir = mkdtempSync(join(tmpdir(), 'cards-secrets-'));
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? '',
      NODE_ENV: 'test',
      LOG_LEVEL: 'error',
      CARDS_PORT: '0',
      CARDS_HOUSEKEEPING_ENABLED: 'false',
      GHOSTPAY_DATA_DIR: dataDir,
    };
    for (const [name, value] of Object.entries(values)) env[envNameForSecret(name)] = value;
    let run: SpawnSyncReturns<string>;
    try {
      run = spawnSync(process.execPath, [mainPath], { cwd: dataDir, env, encoding: 'utf8', timeout: 20_000 });
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
    expect(run.status).toBe(1);
    expect(run.stderr.trim().split('\n')).toEqual([
      'cards: secret pan-fingerprint-key must be at least 32 bytes of random data (e.g. openssl rand -base64 32)',
    ]);
    expect(run.stderr + run.stdout).not.toContain('fingerprint-key-2024');
  });
});
