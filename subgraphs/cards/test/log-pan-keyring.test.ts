import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSecretsProvider } from '@ghostpay/platform';
import { capturingLogger } from '@ghostpay/test-support';
import { afterEach, describe, expect, it } from 'vitest';
import { logPanKeyring } from '../src/log-pan-keyring.ts';

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0)) cleanup();
});

const entry = (id: string) => `${id}:${randomBytes(32).toString('base64')}`;

describe('logPanKeyring', () => {
  it('logs the key ids at start and on each change of the secret file, never a key', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cards-keyring-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, 'pan-encryption-keys');
    const old = entry('old');
    writeFileSync(file, old);
    const secrets = createSecretsProvider({ dir, env: {}, pollIntervalMs: 20 });
    cleanups.push(() => secrets.close());
    const lines: { level: string; fields: Record<string, unknown>; message: string }[] = [];
    const logger = {
      info: (fields: Record<string, unknown>, message: string) => lines.push({ level: 'info', fields, message }),
      warn: (fields: Record<string, unknown>, message: string) => lines.push({ level: 'warn', fields, message }),
    };
    const stop = logPanKeyring(secrets, logger as never);
    cleanups.push(stop);
    expect(lines).toEqual([
      { level: 'info', fields: expect.objectContaining({ activeKeyId: 'old', keyIds: ['old'] }), message: 'PAN keyring loaded' },
    ]);

    const waitFor = async (count: number) => {
      const deadline = Date.now() + 5_000;
      while (lines.length < count && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    };
    // Phase one of a rotation: the new key joins, decrypt-only.
    const next = entry('new');
    writeFileSync(file, `${old},${next}`);
    await waitFor(2);
    expect(lines[1]).toEqual({
      level: 'info',
      fields: expect.objectContaining({ activeKeyId: 'old', keyIds: ['old', 'new'] }),
      message: 'PAN keyring changed',
    });
    writeFileSync(file, 'new:not-a-key');
    await waitFor(3);
    expect(lines[2]).toMatchObject({ level: 'warn', fields: { secretName: 'pan-encryption-keys' } });

    const logged = JSON.stringify(lines);
    for (const key of [old, next].map((e) => e.slice(e.indexOf(':') + 1))) expect(logged).not.toContain(key);
    expect(logged).not.toContain('not-a-key');
  });

  it('names the secret in the lines of the service logger, which censors `secret` values', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cards-keyring-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const key = entry('k1');
    writeFileSync(join(dir, 'pan-encryption-keys'), key);
    const secrets = createSecretsProvider({ dir, env: {}, pollIntervalMs: 60_000 });
    cleanups.push(() => secrets.close());
    const { logger, lines } = capturingLogger('cards');
    cleanups.push(logPanKeyring(secrets, logger));
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0]!)).toMatchObject({
      msg: 'PAN keyring loaded',
      secretName: 'pan-encryption-keys',
      activeKeyId: 'k1',
      keyIds: ['k1'],
    });
    expect(lines[0]).not.toContain(key.slice(key.indexOf(':') + 1));
  });
});
