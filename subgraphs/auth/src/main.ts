import { startTelemetry } from '@ghostpay/platform/telemetry';

// Tracing first, so the modules it instruments (http, pg) load after it: the rest is imported below.
const telemetry = startTelemetry({ serviceName: 'auth' });
const { createDatabase, embeddedDatabaseDir, migrate } = await import('@ghostpay/db');
const { createLogger, createSecretsProvider, exitOnSignals, loadConfig, loadServerTlsConfig, logEffectiveConfig } = await import(
  '@ghostpay/platform'
);
const { authConfigSchema } = await import('./config.ts');
const { createAuthService } = await import('./create-auth-service.ts');

const config = loadConfig('auth', authConfigSchema);
const logger = createLogger({ service: 'auth', level: config.LOG_LEVEL });
logEffectiveConfig(logger, authConfigSchema, config);
const secrets = createSecretsProvider({ dir: config.SECRETS_DIR, logger });
const database = await createDatabase({
  url: config.DATABASE_URL,
  dataDir: embeddedDatabaseDir(config.GHOSTPAY_DATA_DIR),
  applicationName: 'ghostpay-auth',
  preparedStatements: config.DATABASE_PREPARED_STATEMENTS,
});
await migrate(database, { onWarning: (message) => logger.warn(message) });

const service = createAuthService({ database, secrets, logger, config, tls: loadServerTlsConfig('auth') });
await service.start(config.AUTH_PORT, config.HOST);
exitOnSignals(logger, async () => {
  await service.close();
  await database.close();
  secrets.close();
  await telemetry.shutdown();
});
