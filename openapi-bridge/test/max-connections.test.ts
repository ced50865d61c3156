import { describe, expect, it } from 'vitest';
import { bridgeConfigSchema, createBridge } from '../src/index.ts';
import { silentLogger } from './stack-harness.ts';

/** No router needed: the cap is the bridge's own server's. */
describe('the bridge', () => {
  it('holds at most MAX_CONNECTIONS open connections, 10000 unless set', async () => {
    const bridgeWith = (env: Record<string, string>) =>
      createBridge({
        config: bridgeConfigSchema.parse({
          LOG_LEVEL: 'silent',
          SHUTDOWN_TIMEOUT_MS: '200',
          ROUTER_URL: 'http://127.0.0.1:9/graphql',
          ...env,
        }),
        logger: silentLogger,
      });
    for (const [env, expected] of [
      [{}, 10_000],
      [{ MAX_CONNECTIONS: '250' }, 250],
    ] as const) {
      const bridge = bridgeWith(env);
      try {
        await bridge.start(0);
        expect(bridge.server.server.maxConnections).toBe(expected);
      } finally {
        await bridge.close();
      }
    }
  });
});
