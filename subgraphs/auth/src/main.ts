import { createDatabase, migrate } from '@ghostpay/db';
import { createLogger, createSecretsProvider, exitOnSignals, loadConfig } from '@ghostpay/platform';
import { authConfigSchema } from './config.ts';
import { createAuthService } from './create-auth-service.ts';

const config = loadConfig('auth', authConfigSchema);
const logger = createLogger({ service: 'auth', level: config.LOG_LEVEL });
const secrets = createSecretsProvider({ dir: config.SECRETS_DIR });
const database = await createDatabase({ url: config.DATABASE_URL, dataDir: config.GHOSTPAY_DATA_DIR, applicationName: 'ghostpay-auth' });
await migrate(database);

const service = createAuthService({ database, secrets, logger, config });
await service.start(config.AUTH_PORT, config.HOST);
exitOnSignals(logger, async () => {
  await service.close();
  await database.close();
  secrets.close();
});
