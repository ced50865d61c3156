import { startTelemetry } from '@ghostpay/platform/telemetry';

// Tracing first, so the modules it instruments (http, pg) load after it: the rest is imported below.
const telemetry = startTelemetry({ serviceName: 'cards' });
const { createDatabase, embeddedDatabaseDir, migrate } = await import('@ghostpay/db');
const {
  createJwtVerifier,
  jwtVerifierOptionsFrom,
  createLogger,
  createSecretsProvider,
  exitOnSignals,
  loadConfig,
  loadServerTlsConfig,
  logEffectiveConfig,
} = await import('@ghostpay/platform');
const { cardsConfigSchema } = await import('./config.ts');
const { createPanSecrets } = await import('./pan-crypto.ts');
const { createCardsService } = await import('./service.ts');

// Composition root: config → secrets → database → service → listen.
const config = loadConfig('cards', cardsConfigSchema);
const logger = createLogger({ service: 'cards', level: config.LOG_LEVEL });
logEffectiveConfig(logger, cardsConfigSchema, config);
const secrets = createSecretsProvider({ dir: config.SECRETS_DIR, logger });
// Fail at start, not at the first issuance, when a card secret is missing or malformed:
// one readable line, no stack trace, no key material.
try {
  const panSecrets = createPanSecrets(secrets);
  panSecrets.keyring();
  panSecrets.fingerprintKey();
  panSecrets.cvcKey();
} catch (error) {
  process.stderr.write(`cards: ${(error as Error).message}\n`);
  process.exit(1);
}
const database = await createDatabase(
  config.DATABASE_URL
    ? { url: config.DATABASE_URL, applicationName: 'ghostpay-cards', preparedStatements: config.DATABASE_PREPARED_STATEMENTS }
    : { dataDir: embeddedDatabaseDir(config.GHOSTPAY_DATA_DIR) },
);
await migrate(database, { onWarning: (message) => logger.warn(message) });
const verifier = createJwtVerifier({ ...jwtVerifierOptionsFrom(config), logger });
const service = createCardsService({ database, secrets, logger, config, verifier, tls: loadServerTlsConfig('cards') });
const url = await service.start(config.CARDS_PORT, config.HOST);
logger.info({ url }, 'cards subgraph listening');
exitOnSignals(logger, async () => {
  await service.close();
  secrets.close();
  await database.close();
  await telemetry.shutdown();
});
