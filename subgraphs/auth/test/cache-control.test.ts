import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AuthHarness, startAuth } from './auth-harness.ts';

const createToken = 'mutation ($apiKey: String!) { createToken(apiKey: $apiKey) { accessToken } }';

describe('auth answers and caches', () => {
  let auth: AuthHarness;
  beforeAll(async () => {
    auth = await startAuth();
  });
  afterAll(() => auth?.close());

  it('tells every cache between it and the caller to keep nothing: cache-control no-store on an issued token, a refused exchange and a read', async () => {
    const merchant = await auth.seed('merchant');
    const post = (body: unknown, token?: string) =>
      fetch(`${auth.url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
        body: JSON.stringify(body),
      });
    const issued = await post({ query: createToken, variables: { apiKey: merchant.apiKey } });
    const { data } = (await issued.json()) as { data?: { createToken: { accessToken: string } } };
    expect(data?.createToken.accessToken).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/);
    const answers = {
      issued,
      refused: await post({ query: createToken, variables: { apiKey: `${merchant.apiKey}x` } }),
      me: await post({ query: '{ me { id } }' }, data!.createToken.accessToken),
    };
    for (const [name, response] of Object.entries(answers)) expect(response.headers.get('cache-control'), name).toBe('no-store');
  });

  it('still lets caches keep the JWKS, which is public', async () => {
    const jwks = await fetch(auth.jwksUrl);
    expect(jwks.status).toBe(200);
    expect(jwks.headers.get('cache-control')).toMatch(/^public, max-age=\d+$/);
  });
});
