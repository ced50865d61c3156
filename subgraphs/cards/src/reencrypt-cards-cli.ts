/**
 * `npm run cards:reencrypt [-- --batch-size N --max-batches N]`: key rotation, step three
 * (README, "Rotating the PAN encryption key"). Moves every card on DATABASE_URL (or the
 * embedded stack's PGlite data directory, `<GHOSTPAY_DATA_DIR>/pglite`) to the active key of
 * `pan-encryption-keys`, read from SECRETS_DIR as the services read it.
 *
 * Prints the result as one JSON line — counts, the active key id and the ids of cards that
 * failed to decrypt; never key material or card data. Exit status: 0 when nothing is left
 * under another key, 1 when `remaining` or `failed` is above 0 (do not remove the old key),
 * 2 when it could not run (bad option, missing secret or database).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createDatabase, type DatabaseHandle } from '@ghostpay/db';
import { createSecretsProvider } from '@ghostpay/platform';
import { panSecretNames, parsePanKeyring } from './pan-crypto.ts';
import { reencryptCards } from './reencrypt-cards.ts';

function fail(message: string): never {
  process.stderr.write(`cards:reencrypt: ${message}\n`);
  process.exit(2);
}

function positiveInt(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^[1-9]\d*$/.test(value)) fail(`--${name} must be a whole number ≥ 1, got "${value}"`);
  return Number(value);
}

let options: { batchSize?: number; maxBatches?: number };
try {
  const { values } = parseArgs({ options: { 'batch-size': { type: 'string' }, 'max-batches': { type: 'string' } }, strict: true });
  options = { batchSize: positiveInt('batch-size', values['batch-size']), maxBatches: positiveInt('max-batches', values['max-batches']) };
} catch (error) {
  fail(`${(error as Error).message} (options: --batch-size N, --max-batches N)`);
}

// Parse errors name the secret and the entry, never the key (parsePanKeyring's contract).
let keyring: ReturnType<typeof parsePanKeyring>;
try {
  const secrets = createSecretsProvider({ dir: process.env.SECRETS_DIR });
  try {
    keyring = parsePanKeyring(secrets.require(panSecretNames.encryptionKeys));
  } finally {
    secrets.close();
  }
} catch (error) {
  fail((error as Error).message);
}

const url = process.env.DATABASE_URL;
const dataDir = join(process.env.GHOSTPAY_DATA_DIR ?? '.data', 'pglite');
// PGlite would create an empty database in a missing directory: refuse instead.
if (!url && !existsSync(dataDir)) fail(`no DATABASE_URL and no PGlite data in ${dataDir} (set GHOSTPAY_DATA_DIR)`);
let database: DatabaseHandle | undefined;
try {
  // The closing count reads the whole table: allow it more than a request's statement timeout.
  database = await createDatabase(
    url ? { url, poolSize: 1, applicationName: 'ghostpay-cards-reencrypt', statementTimeoutMs: 300_000 } : { dataDir },
  );
  const result = await reencryptCards(database, keyring, options);
  process.stdout.write(`${JSON.stringify({ activeKeyId: keyring.activeKeyId, ...result })}\n`);
  if (result.remaining > 0 || result.failed > 0) process.exitCode = 1;
} catch (error) {
  // A database error (unreachable, a statement timeout): what ran so far is committed, a rerun continues.
  process.stderr.write(`cards:reencrypt: ${(error as Error).message}\n`);
  process.exitCode = 2;
} finally {
  await database?.close();
}
