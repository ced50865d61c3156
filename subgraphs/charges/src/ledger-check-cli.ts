/**
 * `npm run ledger:check`: checks the charges ledger on DATABASE_URL (or the PGlite data
 * directory GHOSTPAY_DATA_DIR) and exits 1 when an invariant is broken.
 */
import { createDatabase, EmbeddedDatabaseInUseError, embeddedDatabaseDir } from '@ghostpay/db';
import { checkLedger } from './ledger-check.ts';

const url = process.env.DATABASE_URL;
const database = await createDatabase(
  url ? { url, poolSize: 1 } : { dataDir: embeddedDatabaseDir(process.env.GHOSTPAY_DATA_DIR ?? '.data') },
).catch((error: unknown) => {
  // The embedded database is another process's (npm start): said plainly, exit 2 (not a ledger verdict).
  if (!(error instanceof EmbeddedDatabaseInUseError)) throw error;
  process.stderr.write(`ledger check: ${error.message}\n`);
  process.exit(2);
});
try {
  const violations = await checkLedger(database);
  if (violations.length === 0) {
    process.stdout.write('ledger check: ok (no violations)\n');
  } else {
    process.stdout.write(`ledger check: ${violations.length} rule(s) violated\n`);
    for (const violation of violations) {
      process.stdout.write(`  ${violation.rule}: ${violation.description}\n    ${violation.ids.join(', ')}\n`);
    }
    process.exitCode = 1;
  }
} finally {
  await database.close();
}
