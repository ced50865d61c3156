/**
 * The bridge's composition root: config from env, the bridge, listen, stop on signals.
 * `node src/main.ts` (or `npm start -w @ghostpay/openapi-bridge`).
 */
import { readFileSync } from 'node:fs';
import { createLogger, exitOnSignals, loadConfig } from '@ghostpay/platform';
import { createBridge } from './bridge.ts';
import { bridgeConfigSchema } from './config.ts';

const config = loadConfig('openapi-bridge', bridgeConfigSchema);
const logger = createLogger({ service: 'openapi-bridge', level: config.LOG_LEVEL });
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
exitOnSignals(logger, () => bridge.close());
