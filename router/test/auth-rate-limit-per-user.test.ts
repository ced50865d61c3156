import { apiKeys, newId } from '@ghostpay/db';
import { createSeed } from '@ghostpay/test-support';
import { describe, expect, it } from 'vitest';
import { codes, post, withRouter } from './router-harness.ts';

const typename = { query: '{ __typename }' };

describe("the rate limit is the user's, whichever of their API keys a token was minted from", () => {
  const setup = withRouter({ database: true, env: { ROUTER_RATE_LIMIT_PER_MINUTE: '6' } });

  it("gives a user's keys, and the keys they make after revoking those, one allowance; another user keeps theirs", async () => {
    const bearer = (apiKeyId: string, userId = 'usr_many_keys') => setup.issuer.bearer({ userId, role: 'merchant', apiKeyId });
    const keys = await Promise.all(['key_first', 'key_second', 'key_third'].map((id) => bearer(id)));
    const statuses: number[] = [];
    for (let i = 0; i < 7; i++) statuses.push((await post(setup.router.graphqlUrl, typename, { authorization: keys[i % 3]! })).status);
    expect(statuses).toEqual([200, 200, 200, 200, 200, 200, 429]);
    // A key made after revoking the others (a new key id, the same user) starts no new window.
    const remade = await post(setup.router.graphqlUrl, typename, { authorization: await bearer('key_remade') });
    expect(remade.status).toBe(429);
    expect(codes(remade)).toEqual(['RATE_LIMITED']);
    expect(remade.headers.get('ratelimit-policy')).toBe('"default";q=6;w=60');
    expect((await post(setup.router.graphqlUrl, typename, { authorization: await bearer('key_elses', 'usr_someone_else') })).status).toBe(
      200,
    );
  });

  it("judges each request by its own key's limit over the user's shared window", async () => {
    const user = await createSeed(setup.database.db).user('merchant');
    const capped = newId('key');
    await setup.database.db
      .insert(apiKeys)
      .values({ id: capped, userId: user.id, prefix: capped.slice(-10), secretHash: 'x', rateLimitPerMinute: 3 });
    const cappedKey = await setup.issuer.bearer({ userId: user.id, role: 'merchant', apiKeyId: capped });
    const defaultKey = await setup.issuer.bearer({ userId: user.id, role: 'merchant', apiKeyId: newId('key') });
    const statuses: number[] = [];
    for (let i = 0; i < 3; i++) statuses.push((await post(setup.router.graphqlUrl, typename, { authorization: defaultKey })).status);
    // Three requests in the user's window already: the key capped at 3 has no room, the default key (6) has.
    statuses.push((await post(setup.router.graphqlUrl, typename, { authorization: cappedKey })).status);
    statuses.push((await post(setup.router.graphqlUrl, typename, { authorization: defaultKey })).status);
    expect(statuses).toEqual([200, 200, 200, 429, 200]);
  });
});
