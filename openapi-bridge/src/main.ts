/**
 * The bridge's composition root: telemetry, config from env, the bridge, listen, stop on
 * signals. `node src/main.ts` (or `npm start -w @ghostpay/openapi-bridge`).
 */
import { startTelemetry } from '@ghostpay/platform/telemetry';

// Tracing first, so the modules it instruments (http) load after it: the rest is imported below.
const telemetry = startTelemetry({ serviceName: 'openapi-bridge' });
const { readFileSync } = await import('node:fs');
const { createLogger, exitOnSignals, loadConfig, logEffectiveConfig } = await import('@ghostpay/platform');
const { createBridge } = await import('./bridge.ts');
const { bridgeConfigSchema } = await import('./config.ts');

const config = loadConfig('openapi-bridge', bridgeConfigSchema);
const logger = createLogger({ service: 'openapi-bridge', level: config.LOG_LEVEL });
logEffectiveConfig(logger, bridgeConfigSchema, config);
if (Boolean(config.BRIDGE_TLS_CERT_FILE) !== Boolean(config.BRIDGE_TLS_KEY_FILE)) {
  process.stderr.write('openapi-bridge: set both BRIDGE_TLS_CERT_FILE and BRIDGE_TLS_KEY_FILE, or neither\n');
  process.exit(1);
}
const tls =
  config.BRIDGE_TLS_CERT_FILE && config.BRIDGE_TLS_KEY_FILE
    ? { cert: readFileSync(config.BRIDGE_TLS_CERT_FILE), key: readFileSync(config.BRIDGE_TLS_KEY_FILE) }
    : undefined;
const bridge = createBridge({ config, logger, ...(tls ? { tls } : {}) });
await bridge.start(config.BRIDGE_PORT, config.HOST);
exitOnSignals(logger, async () => {
  await bridge.close();
  await telemetry.shutdown();
});
