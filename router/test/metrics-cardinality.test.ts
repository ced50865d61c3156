import { describe, expect, it } from 'vitest';
import { post, withRouter, writeManifest } from './router-harness.ts';

/** The distinct `operation_name` values of `graphql_request_duration_seconds` on /metrics. */
async function operationNames(metricsUrl: string): Promise<Set<string>> {
  const text = await (await fetch(metricsUrl)).text();
  const names = new Set<string>();
  for (const match of text.matchAll(/^graphql_request_duration_seconds_count\{[^}]*operation_name="((?:[^"\\]|\\.)*)"/gm)) {
    names.add(match[1] as string);
  }
  return names;
}

describe('operation names as metric labels, chosen by clients', () => {
  const manifestBody = 'query TrustedCard { card(id: "1") { id } }';
  const setup = withRouter({
    env: {
      ROUTER_ANONYMOUS_RATE_LIMIT_PER_MINUTE: '100000',
      ROUTER_PQ_MANIFESTS: writeManifest([{ name: 'TrustedCard', type: 'query', body: manifestBody }]),
    },
  });

  it('never become more than a bounded set of series, however many names are sent, and long names are cut', async () => {
    // Every distinct name used to become its own histogram (a dozen series each, kept for the
    // process's life): an anonymous caller grew the router's memory and every scrape without bound.
    const long = `L${'o'.repeat(5000)}ng`;
    await post(setup.router.graphqlUrl, { query: `query ${long} { __typename }` });
    for (let batch = 0; batch < 6; batch++) {
      await Promise.all(
        Array.from({ length: 50 }, (_, i) => post(setup.router.graphqlUrl, { query: `query Random${batch}x${i} { __typename }` })),
      );
    }
    const metricsUrl = setup.router.graphqlUrl.replace(/\/graphql$/, '/metrics');
    const names = await operationNames(metricsUrl);
    expect(names.size).toBeLessThanOrEqual(101);
    expect(names.has('(other)')).toBe(true);
    for (const name of names) expect(name.length).toBeLessThanOrEqual(100);

    // Operations of the trusted manifests keep their own label once the free-form names are used up.
    const merchant = await setup.issuer.bearer({ userId: 'usr_m', role: 'merchant', apiKeyId: 'key_m' });
    const trusted = await post(setup.router.graphqlUrl, { query: manifestBody }, { authorization: merchant });
    expect(trusted.body.data).toEqual({ card: { id: '1' } });
    expect((await operationNames(metricsUrl)).has('TrustedCard')).toBe(true);
  });
});
