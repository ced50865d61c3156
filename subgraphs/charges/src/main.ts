/** Composition root: telemetry → config → database → migrate → service → listen → stop on signals. */
import { startTelemetry } from '@ghostpay/platform/telemetry';

// Tracing first, so the modules it instruments (http, pg) load after it: the rest is imported below.
const telemetry = startTelemetry({ serviceName: 'charges' });
const { createDatabase, embeddedDatabaseDir, migrate } = await import('@ghostpay/db');
const { createJwtVerifier, jwtVerifierOptionsFrom, createLogger, exitOnSignals, loadConfig, loadServerTlsConfig, logEffectiveConfig } =
  await import('@ghostpay/platform');
const { createChargesService } = await import('./charges-service.ts');
const { chargesConfigSchema } = await import('./config.ts');

const config = loadConfig('charges', chargesConfigSchema);
const logger = createLogger({ service: 'charges', level: config.LOG_LEVEL });
logEffectiveConfig(logger, chargesConfigSchema, config);
const database = await createDatabase(
  config.DATABASE_URL
    ? { url: config.DATABASE_URL, applicationName: 'ghostpay-charges', preparedStatements: config.DATABASE_PREPARED_STATEMENTS }
    : { dataDir: embeddedDatabaseDir(config.GHOSTPAY_DATA_DIR) },
);
await migrate(database, { onWarning: (message) => logger.warn(message) });
const verifier = createJwtVerifier({ ...jwtVerifierOptionsFrom(config), logger });
const service = createChargesService({ database, logger, verifier, config, tls: loadServerTlsConfig('charges') });
await service.start(config.CHARGES_PORT, config.HOST);
exitOnSignals(logger, async () => {
  await service.close();
  await database.close();
  await telemetry.shutdown();
});
