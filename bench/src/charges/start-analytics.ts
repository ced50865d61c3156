import { type AnalyticsConfig, type AnalyticsService, createAnalyticsService, openAnalyticsStore } from '@ghostpay/analytics';
import type { JwtVerifier, Logger, SecretsProvider } from '@ghostpay/platform';

export interface StartAnalyticsDeps {
  config: AnalyticsConfig;
  secrets: SecretsProvider;
  verifier: JwtVerifier;
  logger: Logger;
}

/**
 * Opens the analytics store, builds the service on it and starts it listening on `port`. The
 * service owns the store from then on: `close()` closes it, and a failed `start()` (its indexes,
 * its port) closes it before rethrowing. The catch here covers building the service failing
 * (a bad TLS setting), which leaves the store with us; closing twice is harmless. The embedded
 * store holds a lock on its directory (`EmbeddedStoreInUseError` for the next opener until the
 * pid is gone), and a MongoDB store its connection pool.
 */
export async function startAnalytics(deps: StartAnalyticsDeps, port: number, host: string): Promise<AnalyticsService> {
  const store = await openAnalyticsStore(deps.config);
  try {
    const analytics = createAnalyticsService({
      store,
      secrets: deps.secrets,
      verifier: deps.verifier,
      logger: deps.logger,
      config: deps.config,
    });
    await analytics.start(port, host);
    return analytics;
  } catch (error) {
    // The start's error is the one to report; a store that also fails to close adds nothing to it.
    await store.close().catch(() => {});
    throw error;
  }
}
