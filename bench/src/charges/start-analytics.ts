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
 * service closes the store once it has started (`close()`); when building or starting fails (its
 * indexes, its port), the store is closed here before the error is rethrown: the embedded store
 * holds a lock on its directory (`EmbeddedStoreInUseError` for the next opener, in this process
 * or another, until the pid is gone), and a MongoDB store its connection pool.
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
