/**
 * A token whose API key auth has revoked: signed and unexpired, it is refused by the router as
 * UNAUTHENTICATED once the key lookup (auth.api_keys, cached per key) sees the revocation, on
 * every path that verifies a token, instead of working until it expires.
 */
import { apiKeys, newId } from '@ghostpay/db';
import { createSeed, createTestTokenIssuer, freshDatabase, type TestDatabase, type TestTokenIssuer } from '@ghostpay/test-support';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKeyLookup } from '../src/api-keys.ts';
import { codes, post, type StubSubgraphs, startRouter, startStubSubgraphs } from './router-harness.ts';
import { idleSubscriptions } from './subscriptions-harness.ts';

const lookupTtlMs = 200;
const typename = { query: '{ __typename }' };

describe('tokens of a revoked API key', () => {
  let database: TestDatabase;
  let issuer: TestTokenIssuer;
  let subgraphs: StubSubgraphs;
  let router: Awaited<ReturnType<typeof startRouter>>;

  /** A key row in auth.api_keys and a token for it. */
  const keyWithToken = async () => {
    const user = await createSeed(database.db).user('merchant');
    const keyId = newId('key');
    await database.db.insert(apiKeys).values({ id: keyId, userId: user.id, prefix: keyId.slice(-10), secretHash: 'x' });
    return { keyId, bearer: await issuer.bearer({ userId: user.id, role: 'merchant', apiKeyId: keyId }) };
  };
  const revoke = (keyId: string) => database.db.update(apiKeys).set({ revokedAt: new Date() }).where(eq(apiKeys.id, keyId));
  /** Past the lookup's cache: the next request reads the row again. */
  const afterTtl = () => new Promise((resolve) => setTimeout(resolve, lookupTtlMs * 2));

  beforeAll(async () => {
    database = await freshDatabase({ poolSize: 2 });
    issuer = await createTestTokenIssuer();
    subgraphs = await startStubSubgraphs(issuer.verifier);
    router = await startRouter({
      verifier: issuer.verifier,
      urls: subgraphs.urls,
      apiKeyLookup: createApiKeyLookup(database, { ttlMs: lookupTtlMs }),
      subscriptions: idleSubscriptions(issuer),
    });
  });
  afterAll(async () => {
    await router?.close();
    await subgraphs?.close();
    await database?.close();
  });

  it('are refused with 401 UNAUTHENTICATED once the lookup sees the revocation; other keys keep working', async () => {
    const revoked = await keyWithToken();
    const kept = await keyWithToken();
    expect((await post(router.graphqlUrl, typename, { authorization: revoked.bearer })).status).toBe(200);

    await revoke(revoked.keyId);
    await afterTtl();
    const refused = await post(router.graphqlUrl, typename, { authorization: revoked.bearer });
    expect(refused.status).toBe(401);
    expect(codes(refused)).toEqual(['UNAUTHENTICATED']);
    expect(refused.body.errors?.[0]?.message).toBe('The API key of this token has been revoked');
    expect(refused.headers.get('www-authenticate')).toBe('Bearer error="invalid_token"');

    expect((await post(router.graphqlUrl, typename, { authorization: kept.bearer })).status).toBe(200);
    // A key the lookup does not know (no row) is not refused for it: the signature vouches for it.
    const unknown = await issuer.bearer({ userId: 'usr_x', role: 'merchant', apiKeyId: 'key_not_in_the_table' });
    expect((await post(router.graphqlUrl, typename, { authorization: unknown })).status).toBe(200);
  });

  it('are refused on the SSE subscription endpoint too', async () => {
    const { keyId, bearer } = await keyWithToken();
    await revoke(keyId);
    await afterTtl();
    const response = await fetch(`${router.url}/graphql/stream`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream', authorization: bearer },
      body: JSON.stringify({ query: 'subscription ($id: ID!) { chargeUpdated(id: $id) { id status } }', variables: { id: 'ch_1' } }),
    });
    expect(response.status).toBe(401);
    expect(((await response.json()) as { errors: { extensions: { code: string } }[] }).errors[0]?.extensions.code).toBe('UNAUTHENTICATED');
  });
});
