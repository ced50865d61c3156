import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { analyticsConfigSchema, openAnalyticsStore } from '@ghostpay/analytics';
import { createLogger, createSecretsProvider } from '@ghostpay/platform';
import { createTestTokenIssuer } from '@ghostpay/test-support';
import { afterEach, describe, expect, it } from 'vitest';
import { startAnalytics } from '../src/charges/start-analytics.ts';

/**
 * The bench stack's analytics (stack-process.ts) on the embedded store, which locks its
 * directory while open: a start that fails must not leave the lock held.
 */
describe('startAnalytics', () => {
  const cleanups: Array<() => unknown> = [];
  afterEach(async () => {
    for (let cleanup = cleanups.pop(); cleanup; cleanup = cleanups.pop()) await cleanup();
  });

  const deps = async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'bench-analytics-'));
    cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
    const config = analyticsConfigSchema.parse({ GHOSTPAY_DATA_DIR: dataDir, LOG_LEVEL: 'silent' });
    const secrets = createSecretsProvider({ env: {} });
    cleanups.push(() => secrets.close());
    const { verifier } = await createTestTokenIssuer();
    return { config, secrets, verifier, logger: createLogger({ service: 'analytics', level: 'silent' }) };
  };

  it('closes the store it opened when the service does not start (its port taken)', async () => {
    const analyticsDeps = await deps();
    const taken: Server = createServer();
    taken.listen(0, '127.0.0.1');
    await once(taken, 'listening');
    cleanups.push(() => new Promise((done) => taken.close(done)));
    const port = (taken.address() as { port: number }).port;

    await expect(startAnalytics(analyticsDeps, port, '127.0.0.1')).rejects.toMatchObject({ code: 'EADDRINUSE' });
    // The directory is free again: held, this would be EmbeddedStoreInUseError naming this process.
    const reopened = await openAnalyticsStore(analyticsDeps.config);
    await reopened.close();
  });

  it('leaves the store to the started service, which closes it with itself', async () => {
    const analyticsDeps = await deps();
    const analytics = await startAnalytics(analyticsDeps, 0, '127.0.0.1');
    expect((await fetch(`${analytics.url}/healthz`)).status).toBe(200);
    await expect(openAnalyticsStore(analyticsDeps.config)).rejects.toMatchObject({ name: 'EmbeddedStoreInUseError' });
    await analytics.close();
    const reopened = await openAnalyticsStore(analyticsDeps.config);
    await reopened.close();
  });
});
