import { describe, expect, it } from 'vitest';
import { post, withRouter } from './router-harness.ts';
import { idleSubscriptions, wsClient } from './subscriptions-harness.ts';

/**
 * Each subscribe attempt runs the client's whole selection through the gateway at once (its
 * first payload), so it is a request like POST /graphql's: it counts against the caller's
 * per-minute limit. Without that, subscribing and unsubscribing in a loop, over SSE or on one
 * WebSocket, ran any number of queries (up to the cost limit each) past the rate limit.
 */
describe('subscribe attempts count against the per-minute rate limit', () => {
  const setup = withRouter({ env: { ROUTER_RATE_LIMIT_PER_MINUTE: '3' }, subscriptions: idleSubscriptions });
  const query = 'subscription Watch($id: ID!) { chargeUpdated(id: $id) { id status } }';
  const chargesHits = () => setup.subgraphs.hits.charges ?? 0;

  it('over SSE: past the limit, 429 RATE_LIMITED with Retry-After, and no query runs', async () => {
    const user = await setup.issuer.bearer({ userId: 'usr_sse', role: 'user', apiKeyId: 'key_sse' });
    const before = chargesHits();
    const statuses: number[] = [];
    let refusal: Response | undefined;
    for (let i = 0; i < 6; i++) {
      const controller = new AbortController();
      const response = await fetch(`${setup.router.url}/graphql/stream`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'text/event-stream', authorization: user },
        body: JSON.stringify({ query, variables: { id: `ch_${i}` } }),
        signal: controller.signal,
      });
      statuses.push(response.status);
      if (response.status === 429) refusal ??= response;
      else {
        // The first payload (the gateway query) arrives, then the client goes away.
        const reader = (response.body as ReadableStream<Uint8Array>).getReader();
        await reader.read();
        controller.abort();
      }
    }
    expect(statuses).toEqual([200, 200, 200, 429, 429, 429]);
    expect(refusal?.headers.get('retry-after')).toMatch(/^\d+$/);
    expect(await refusal?.json()).toMatchObject({ errors: [{ extensions: { code: 'RATE_LIMITED' } }] });
    expect(chargesHits() - before).toBe(3);
  });

  it('over one WebSocket: subscribe/complete in a loop is refused past the limit with RATE_LIMITED', async () => {
    const user = await setup.issuer.bearer({ userId: 'usr_ws', role: 'user', apiKeyId: 'key_ws' });
    const client = wsClient(`${setup.router.url.replace(/^http/, 'ws')}/graphql`, user);
    const before = chargesHits();
    const outcomes: string[] = [];
    try {
      for (let i = 0; i < 6; i++) {
        const outcome = await new Promise<string>((resolve) => {
          let settled = false;
          const stop = client.subscribe(
            { query, variables: { id: `ch_ws_${i}` } },
            {
              next: () => {
                if (settled) return;
                settled = true;
                setImmediate(() => stop());
                resolve('next');
              },
              error: (error) => {
                settled = true;
                const code = Array.isArray(error) ? String(error[0]?.extensions?.code) : 'closed';
                resolve(code);
              },
              complete: () => {
                if (!settled) resolve('complete');
              },
            },
          );
        });
        outcomes.push(outcome);
      }
    } finally {
      await client.dispose();
    }
    expect(outcomes).toEqual(['next', 'next', 'next', 'RATE_LIMITED', 'RATE_LIMITED', 'RATE_LIMITED']);
    expect(chargesHits() - before).toBe(3);
  });

  it('shares the key’s budget with POST /graphql', async () => {
    const user = await setup.issuer.bearer({ userId: 'usr_mix', role: 'user', apiKeyId: 'key_mix' });
    for (let i = 0; i < 3; i++) await post(setup.router.graphqlUrl, { query: '{ __typename }' }, { authorization: user });
    const response = await fetch(`${setup.router.url}/graphql/stream`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream', authorization: user },
      body: JSON.stringify({ query, variables: { id: 'ch_mix' } }),
    });
    expect(response.status).toBe(429);
  });
});
