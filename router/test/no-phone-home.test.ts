import { createTestTokenIssuer } from '@ghostpay/test-support';
import { afterAll, describe, expect, it } from 'vitest';
import { type StubSubgraphs, startRouter, startStubSubgraphs } from './router-harness.ts';

describe('the router never phones home', () => {
  let subgraphs: StubSubgraphs | undefined;
  let router: Awaited<ReturnType<typeof startRouter>> | undefined;
  afterAll(async () => {
    await router?.close();
    await subgraphs?.close();
  });

  it("turns off @apollo/gateway's usage-data exporter (and its cloud-metadata probes) however it is embedded", async () => {
    const before = process.env.APOLLO_TELEMETRY_DISABLED;
    delete process.env.APOLLO_TELEMETRY_DISABLED;
    try {
      const issuer = await createTestTokenIssuer();
      subgraphs = await startStubSubgraphs(issuer.verifier);
      router = await startRouter({ verifier: issuer.verifier, urls: subgraphs.urls });
      // @apollo/gateway reads this when it is constructed: anything but 'true'/'1' starts the exporter.
      expect(process.env.APOLLO_TELEMETRY_DISABLED).toBe('true');
    } finally {
      if (before === undefined) delete process.env.APOLLO_TELEMETRY_DISABLED;
      else process.env.APOLLO_TELEMETRY_DISABLED = before;
    }
  });
});
