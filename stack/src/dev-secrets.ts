import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * The secrets the services read from SECRETS_DIR, and how a development value is made.
 * Keyrings use `id:base64key` entries (first = active), so keys can rotate later.
 */
const devSecrets: Record<string, () => string> = {
  'signing-kek': () => `dev1:${randomBytes(32).toString('base64')}`,
  'pan-encryption-keys': () => `dev1:${randomBytes(32).toString('base64')}`,
  'cvc-key': () => randomBytes(32).toString('base64'),
  'pan-fingerprint-key': () => randomBytes(32).toString('base64'),
  'analytics-ingest-token': () => randomBytes(32).toString('base64url'),
};

/**
 * Creates any missing development secret as a file under `dir` (mode 0600) with fresh
 * random bytes. Nothing is hard-coded; existing files are kept so data encrypted under
 * them stays readable across restarts. Returns the names it created.
 */
export function ensureDevSecrets(dir: string): string[] {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const created: string[] = [];
  for (const [name, make] of Object.entries(devSecrets)) {
    const path = join(dir, name);
    if (existsSync(path)) continue;
    writeFileSync(path, `${make()}\n`, { mode: 0o600, flag: 'wx' });
    chmodSync(path, 0o600);
    created.push(name);
  }
  return created;
}
