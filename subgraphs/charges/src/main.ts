/** Composition root: config → database → migrate → service → listen → stop on signals. */
import { join } from 'node:path';
import { createDatabase, migrate } from '@ghostpay/db';
import { createJwtVerifier, createLogger, exitOnSignals, loadConfig } from '@ghostpay/platform';
import { createChargesService } from './charges-service.ts';
import { chargesConfigSchema } from './config.ts';

const config = loadConfig('charges', chargesConfigSchema);
const logger = createLogger({ service: 'charges', level: config.LOG_LEVEL });
const database = await createDatabase(
  config.DATABASE_URL
    ? { url: config.DATABASE_URL, applicationName: 'ghostpay-charges' }
    : { dataDir: join(config.GHOSTPAY_DATA_DIR, 'pglite') },
);
await migrate(database);
const verifier = createJwtVerifier({ jwksUrl: config.JWKS_URL, issuer: config.JWT_ISSUER, audience: config.JWT_AUDIENCE });
const service = createChargesService({ database, logger, verifier, config });
await service.start(config.CHARGES_PORT, config.HOST);
exitOnSignals(logger, async () => {
  await service.close();
  await database.close();
});
