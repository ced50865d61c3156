import { startTelemetry } from '@ghostpay/platform/telemetry';

// Tracing first, so the modules it instruments (http) load after it: the rest is imported below.
const telemetry = startTelemetry({ serviceName: 'analytics' });
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
const { analyticsConfigSchema, createAnalyticsService, EmbeddedStoreInUseError, openAnalyticsStore } = await import('./index.ts');

const config = loadConfig('analytics', analyticsConfigSchema);
const logger = createLogger({ service: 'analytics', level: config.LOG_LEVEL });
logEffectiveConfig(logger, analyticsConfigSchema, config);
const secrets = createSecretsProvider({ dir: config.SECRETS_DIR, logger });
const verifier = createJwtVerifier({ ...jwtVerifierOptionsFrom(config), logger });
const store = await openAnalyticsStore(config).catch(async (error: unknown) => {
  // Another process has the embedded store's directory: its message says which and what to do.
  if (!(error instanceof EmbeddedStoreInUseError)) throw error;
  process.stderr.write(`analytics: ${error.message}\n`);
  await telemetry.shutdown();
  process.exit(1);
});
logger.info({ store: store.kind }, 'analytics store open');

const service = createAnalyticsService({ store, secrets, logger, verifier, config, tls: loadServerTlsConfig('analytics') });
if (!secrets.get('analytics-ingest-token')) logger.warn('secret analytics-ingest-token is not set: ingest answers 503 until it is');
await service.start(config.ANALYTICS_PORT, config.HOST);
exitOnSignals(logger, async () => {
  await service.close();
  secrets.close();
  await telemetry.shutdown();
});
