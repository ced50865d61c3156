import { signingKeys } from '@ghostpay/db';
import { inArray, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AuthHarness, randomKek, startAuth } from './auth-harness.ts';

const createToken = 'mutation ($apiKey: String!) { createToken(apiKey: $apiKey) { accessToken } }';
const createUser = `mutation ($input: CreateUserInput!) { createUser(input: $input) { user { id } apiKey { id } secret } }`;
const createApiKey = 'mutation ($userId: ID!) { createApiKey(userId: $userId) { apiKey { id } secret } }';
const revokeApiKey = 'mutation ($id: ID!) { revokeApiKey(id: $id) { id revokedAt } }';
const codeOf = (result: { errors?: { extensions?: { code?: string } }[] }) => result.errors?.[0]?.extensions?.code;

describe('credentials in logs', () => {
  const kekBase64 = randomKek();
  const otherKekBase64 = randomKek();
  let auth: AuthHarness;
  beforeAll(async () => {
    auth = await startAuth({ kek: `k1:${kekBase64}`, captureLogs: true, env: { FAILED_EXCHANGE_LIMIT_PER_KEY: '2' } });
  });
  afterAll(() => auth?.close());

  it('never writes an API key, its secret half, an access token or a KEK into a log line, on any path', async () => {
    const credentials: string[] = [kekBase64, otherKekBase64];
    const admin = await auth.seed('admin');
    credentials.push(admin.apiKey);
    const adminToken = await auth.token(admin.apiKey);
    credentials.push(adminToken);

    const created = await auth.gql<{ createUser: { user: { id: string }; apiKey: { id: string }; secret: string } }>(
      createUser,
      { input: { name: 'Logged', email: 'logged@example.test', role: 'MERCHANT' } },
      { token: adminToken },
    );
    const merchant = created.data!.createUser;
    credentials.push(merchant.secret);
    const merchantToken = await auth.token(merchant.secret);
    credentials.push(merchantToken);
    const second = await auth.gql<{ createApiKey: { apiKey: { id: string }; secret: string } }>(
      createApiKey,
      { userId: merchant.user.id },
      { token: merchantToken },
    );
    credentials.push(second.data!.createApiKey.secret);

    // Failures: a wrong secret, a malformed key (someone pasting a key with a stray character),
    // the right key in the document itself, a parse error around it, and past the limit.
    const prefix = merchant.secret.split('_')[1]!;
    const wrong = `gp_${prefix}_${'Q'.repeat(43)}`;
    credentials.push(wrong, `${merchant.secret}.`);
    expect(codeOf(await auth.gql(createToken, { apiKey: wrong }))).toBe('UNAUTHENTICATED');
    expect(codeOf(await auth.gql(createToken, { apiKey: `${merchant.secret}.` }))).toBe('UNAUTHENTICATED');
    await auth.gql(`mutation { createToken(apiKey: "${second.data!.createApiKey.secret}") { accessToken } }`);
    await auth.gql(`mutation { createToken(apiKey: "${second.data!.createApiKey.secret}) { accessToken } }`);
    await auth.gql('mutation ($apiKey: Int!) { createToken(apiKey: $apiKey) { accessToken } }', { apiKey: merchant.secret });
    for (let n = 0; n < 3; n++) await auth.gql(createToken, { apiKey: wrong });
    // A token presented in a broken or wrong header.
    await auth.gql('{ me { id } }', {}, { token: `${merchantToken}x` });
    await auth.gql('{ me { id } }', {}, { headers: { authorization: `Token ${merchantToken}` } });

    // Revocation, twice, and a revoked key's exchange and mutations.
    await auth.gql(revokeApiKey, { id: second.data!.createApiKey.apiKey.id }, { token: merchantToken });
    await auth.gql(revokeApiKey, { id: second.data!.createApiKey.apiKey.id }, { token: adminToken });
    await auth.gql(createToken, { apiKey: second.data!.createApiKey.secret });

    // Rotation, and a replica whose KEK cannot decrypt the signing key: an unexpected error, logged with its cause.
    await auth.database.db
      .update(signingKeys)
      .set({
        createdAt: sql`${signingKeys.createdAt} - interval '1 hour'`,
        activatedAt: sql`${signingKeys.activatedAt} - interval '1 hour'`,
      })
      .where(inArray(signingKeys.state, ['next', 'current']));
    expect(codeOf(await auth.gql('mutation { rotateSigningKey { kid } }', {}, { token: adminToken }))).toBeUndefined();
    const replica = await auth.replica({ KEK: `k1:${otherKekBase64}` });
    const broken = await fetch(`${replica.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ query: createToken, variables: { apiKey: admin.apiKey } }),
    });
    expect(codeOf((await broken.json()) as never)).toBe('INTERNAL_SERVER_ERROR');

    const text = auth.logLines.join('\n');
    // The paths above were logged, so the search below looked at them.
    for (const message of ['user created', 'API key created', 'token exchange rejected', 'API key revoked', 'rotated the signing key']) {
      expect(text, message).toContain(message);
    }
    expect(text).toContain('unexpected error while executing an operation');
    for (const credential of credentials) {
      expect(text.includes(credential), `a log line holds ${credential.slice(0, 6)}…`).toBe(false);
      // The secret half alone is as good as the key: the prefix is public.
      const secretHalf = /^gp_[0-9A-Za-z]+_(.+)$/.exec(credential)?.[1];
      if (secretHalf) expect(text.includes(secretHalf), `a log line holds the secret half of ${credential.slice(0, 6)}…`).toBe(false);
    }
    // A JWT's signature alone cannot be replayed, but its header+payload+signature can: none of its parts beyond the header.
    for (const token of [adminToken, merchantToken]) expect(text.includes(token.split('.')[2]!)).toBe(false);
  });
});
