/**
 * `npm run cards:reencrypt -- [--embedded | --data-dir DIR] [--batch-size N] [--max-batches N] [--ciphertext-version N]`:
 * key rotation, step three (README, "Rotating the PAN encryption key"). Moves every card on
 * DATABASE_URL to the active key of `pan-encryption-keys`, read from SECRETS_DIR as the
 * services read it. Without DATABASE_URL it opens a PGlite directory only when told which one:
 * `--embedded` is the embedded stack's (`<GHOSTPAY_DATA_DIR>/pglite`), `--data-dir DIR` any
 * other (a standalone cards service's is `<GHOSTPAY_DATA_DIR>/pg`). Guessing could rewrite a
 * database the service does not use and report `remaining: 0` for it.
 *
 * `--ciphertext-version N` moves the rows to that format instead of the one this release writes
 * (`panCiphertextWriteVersion`). A version newer than that one is refused (exit 2, nothing read)
 * unless `CARDS_PREVIOUS_RELEASE_RETIRED=true` says that no replica of the previous release, which
 * cannot read it, runs or will run again (README, "Ciphertext format versions").
 *
 * Prints the result as one JSON line — counts, the active key id and the ids of cards that
 * failed to decrypt; never key material or card data. Exit status: 0 when nothing is left
 * under another key, 1 when `remaining` or `failed` is above 0 (do not remove the old key),
 * 2 when it could not run (bad option, missing secret or database, a database error); an
 * error is printed as its code and PostgreSQL's own message, never the failed statement's values.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createDatabase, type DatabaseHandle, EmbeddedDatabaseInUseError, embeddedDatabaseDir } from '@ghostpay/db';
import { createSecretsProvider, isFunctionAuthored, scrubErrorText, withoutInterpolatedData } from '@ghostpay/platform';
import { type PanCiphertextVersion, panCiphertextWriteVersion, panSecretNames, parsePanKeyring } from './pan-crypto.ts';
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

const usage = '--batch-size N, --max-batches N, --ciphertext-version N, --embedded or --data-dir DIR';

/** The variable that allows a ciphertext version the previous release cannot read. */
const previousReleaseRetiredVariable = 'CARDS_PREVIOUS_RELEASE_RETIRED';

let options: { batchSize?: number; maxBatches?: number; version?: PanCiphertextVersion; previousReleaseRetired?: boolean };
let pgliteDir: string | undefined;
try {
  const { values } = parseArgs({
    options: {
      'batch-size': { type: 'string' },
      'max-batches': { type: 'string' },
      'ciphertext-version': { type: 'string' },
      embedded: { type: 'boolean' },
      'data-dir': { type: 'string' },
    },
    strict: true,
  });
  options = { batchSize: positiveInt('batch-size', values['batch-size']), maxBatches: positiveInt('max-batches', values['max-batches']) };
  const version = values['ciphertext-version'];
  if (version !== undefined) {
    if (version !== '1' && version !== '2') fail(`--ciphertext-version must be 1 or 2, got "${version}"`);
    options.version = Number(version) as PanCiphertextVersion;
    const retired = process.env[previousReleaseRetiredVariable];
    if (retired !== undefined && retired !== 'true' && retired !== 'false') fail(`${previousReleaseRetiredVariable} must be true or false`);
    options.previousReleaseRetired = retired === 'true';
    if (options.version > panCiphertextWriteVersion && !options.previousReleaseRetired) {
      fail(
        `--ciphertext-version ${version} is newer than this release writes (${panCiphertextWriteVersion}) and a replica of the previous ` +
          `release cannot read it: set ${previousReleaseRetiredVariable}=true only once no replica of that release runs or will run again (rollback included)`,
      );
    }
  }
  if (values.embedded && values['data-dir'] !== undefined) fail('--embedded and --data-dir name two databases: give one');
  if (values['data-dir'] === '') fail('--data-dir needs a directory');
  pgliteDir = values.embedded ? embeddedDatabaseDir(process.env.GHOSTPAY_DATA_DIR ?? '.data') : values['data-dir'];
} catch (error) {
  fail(`${(error as Error).message} (options: ${usage})`);
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
if (url && pgliteDir !== undefined) fail('DATABASE_URL is set and --embedded/--data-dir names a PGlite directory: give one database');
if (!url && pgliteDir === undefined) {
  fail(
    "no DATABASE_URL: pass --embedded for the embedded stack's PGlite (<GHOSTPAY_DATA_DIR>/pglite) or --data-dir DIR for another " +
      "(a standalone cards service's is <GHOSTPAY_DATA_DIR>/pg)",
  );
}
// PGlite would create an empty database in a missing or empty directory: refuse instead.
if (pgliteDir !== undefined && !existsSync(join(pgliteDir, 'PG_VERSION'))) fail(`no PGlite database in ${pgliteDir}`);

/**
 * What is printed for a failed run: the first error on the cause chain that has a `code` (the
 * PostgreSQL error under drizzle's, or a system error such as ECONNREFUSED), as that code and
 * the first line of its own message with quoted values scrubbed (`invalid input syntax for type
 * uuid: "…"` quotes the value). Never drizzle's message (it lists the statement's parameters:
 * ciphertexts, card ids), nor `detail` (`Key (…)=(…)`, `Failing row contains (…)`), `params`,
 * `query` or `where`. Without a code, only the error's class name.
 *
 * A message written by a trigger or function (`RAISE`, `ASSERT`) is free text that may
 * interpolate anything the function sees, the row being re-encrypted included (`new.id`,
 * `new.pan_ciphertext`, the whole `new` record): its data-like runs are withheld too
 * ({@link withoutInterpolatedData}), keeping the words an operator needs to find the trigger.
 * Control characters never reach the terminal.
 */
function describeFailure(error: unknown): string {
  let current = error;
  let name = 'unknown error';
  for (let depth = 0; depth < 10 && typeof current === 'object' && current !== null; depth++) {
    const fields = current as { code?: unknown; message?: unknown; name?: unknown; cause?: unknown; routine?: unknown; file?: unknown };
    if (typeof fields.code === 'string' && /^[A-Z0-9_]{1,32}$/.test(fields.code)) {
      let message = typeof fields.message === 'string' ? scrubErrorText(fields.message.split('\n')[0]!) : '';
      if (isFunctionAuthored(fields)) message = withoutInterpolatedData(message);
      message = message.replace(/\p{Cc}/gu, ' ').slice(0, 300);
      return message ? `${fields.code}: ${message}` : fields.code;
    }
    if (typeof fields.name === 'string' && /^\w{1,64}$/.test(fields.name)) name = fields.name;
    current = fields.cause;
  }
  return `${name}, no error code`;
}

let database: DatabaseHandle | undefined;
try {
  // The closing count reads the whole table: allow it more than a request's statement timeout.
  database = await createDatabase(
    url ? { url, poolSize: 1, applicationName: 'ghostpay-cards-reencrypt', statementTimeoutMs: 300_000 } : { dataDir: pgliteDir },
  );
  const result = await reencryptCards(database, keyring, options);
  process.stdout.write(`${JSON.stringify({ activeKeyId: keyring.activeKeyId, ...result })}\n`);
  if (result.remaining > 0 || result.failed > 0) process.exitCode = 1;
} catch (error) {
  if (error instanceof EmbeddedDatabaseInUseError) {
    // Nothing was read or written: the embedded database is another process's (npm start).
    process.stderr.write(`cards:reencrypt: ${error.message}\n`);
    process.exitCode = 2;
  } else {
    // Unreachable, a statement timeout, a refused update: the batches committed before it stay,
    // the failing one rolled back, and a rerun continues.
    process.stderr.write(
      `cards:reencrypt: the run stopped on an error; committed batches stay, rerun to continue (${describeFailure(error)})\n`,
    );
    process.exitCode = 2;
  }
} finally {
  await database?.close().catch(() => undefined);
}
