import { createLogger, createSecretsProvider } from '@ghostpay/platform';
import { createTestTokenIssuer } from '@ghostpay/test-support';
import { describe, expect, it } from 'vitest';
import { analyticsConfigSchema, createAnalyticsService } from '../src/index.ts';
import { backends } from './backends.ts';

describe('the analytics service', () => {
  it('holds at most MAX_CONNECTIONS open connections, 10000 unless set', async () => {
    const [embedded] = backends;
    const issuer = await createTestTokenIssuer();
    for (const [env, expected] of [
      [{}, 10_000],
      [{ MAX_CONNECTIONS: '250' }, 250],
    ] as const) {
      const opened = await embedded!.open();
      const service = createAnalyticsService({
        store: opened.store,
        secrets: createSecretsProvider({ env: {} }),
        logger: createLogger({ service: 'analytics', level: 'silent' }),
        verifier: issuer.verifier,
        config: analyticsConfigSchema.parse({ LOG_LEVEL: 'silent', ...env }),
      });
      try {
        await service.start(0);
        expect(service.server.maxConnections).toBe(expected);
      } finally {
        await service.close();
        await opened.cleanup();
      }
    }
  });
});
