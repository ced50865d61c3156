import { signingKeys } from '@ghostpay/db';
import { inArray, sql } from 'drizzle-orm';
import { decodeJwt, decodeProtectedHeader } from 'jose';
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
    for (const message of [
      'user created',
      'API key created',
      'access token issued',
      'token exchange rejected',
      'API key revoked',
      'rotated the signing key',
    ]) {
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

describe('audit trail', () => {
  let auth: AuthHarness;
  beforeAll(async () => {
    auth = await startAuth({ captureLogs: true, env: { TRUSTED_PROXY_HOPS: '1' } });
  });
  afterAll(() => auth?.close());

  const lines = (message: string) =>
    auth.logLines.map((line) => JSON.parse(line) as Record<string, unknown>).filter((line) => line.msg === message);

  it('logs each issued token by its key, jti, signing key and client address, with the request id', async () => {
    const merchant = await auth.seed('merchant');
    const result = await auth.gql<{ createToken: { accessToken: string } }>(
      createToken,
      { apiKey: merchant.apiKey },
      { headers: { 'x-forwarded-for': '198.51.100.23' } },
    );
    const token = result.data!.createToken.accessToken;
    const issued = lines('access token issued').filter((line) => line.apiKeyId === merchant.apiKeyId);
    expect(issued).toHaveLength(1);
    const { jti, exp } = decodeJwt(token);
    expect(issued[0]).toMatchObject({
      level: 30,
      userId: merchant.userId,
      role: 'merchant',
      keyPrefix: merchant.apiKey.split('_')[1],
      tokenId: jti,
      kid: decodeProtectedHeader(token).kid,
      expiresAt: new Date(exp! * 1000).toISOString(),
      clientAddress: '198.51.100.23',
      requestId: expect.any(String),
    });
    // A rejection carries its request id too.
    await auth.gql(createToken, { apiKey: `gp_${merchant.apiKey.split('_')[1]}_${'R'.repeat(43)}` });
    expect(lines('token exchange rejected').at(-1)).toMatchObject({ requestId: expect.any(String), reason: 'wrong secret' });
  });

  it('audits who created a user or key and who revoked a key, with which of their keys; a repeated revocation, even a concurrent one, changes nothing and says so', async () => {
    const merchant = await auth.seed('merchant');
    const merchantToken = await auth.token(merchant.apiKey);
    const admin = await auth.seed('admin');
    const adminToken = await auth.token(admin.apiKey);
    const keys: string[] = [];
    for (let n = 0; n < 2; n++) {
      const created = await auth.gql<{ createApiKey: { apiKey: { id: string } } }>(
        createApiKey,
        { userId: merchant.userId },
        { token: merchantToken },
      );
      keys.push(created.data!.createApiKey.apiKey.id);
    }
    const [first, second] = keys as [string, string];
    expect(lines('API key created').filter((line) => line.apiKeyId === first)).toEqual([
      expect.objectContaining({ userId: merchant.userId, by: merchant.userId, byApiKeyId: merchant.apiKeyId }),
    ]);
    const createdUser = await auth.gql<{ createUser: { user: { id: string } } }>(
      createUser,
      { input: { name: 'Audited', email: 'audited@example.test', role: 'ADMIN' } },
      { token: adminToken },
    );
    expect(lines('user created').filter((line) => line.userId === createdUser.data!.createUser.user.id)).toEqual([
      expect.objectContaining({ role: 'admin', by: admin.userId, byApiKeyId: admin.apiKeyId }),
    ]);

    const revoked = await auth.gql<{ revokeApiKey: { revokedAt: string } }>(revokeApiKey, { id: first }, { token: merchantToken });
    const again = await auth.gql<{ revokeApiKey: { revokedAt: string } }>(revokeApiKey, { id: first }, { token: adminToken });
    expect(again.data?.revokeApiKey.revokedAt).toBe(revoked.data?.revokeApiKey.revokedAt);
    expect(lines('API key revoked').filter((line) => line.apiKeyId === first)).toEqual([
      expect.objectContaining({ ownerId: merchant.userId, by: merchant.userId, byApiKeyId: merchant.apiKeyId }),
    ]);
    expect(lines('API key already revoked: nothing changed').filter((line) => line.apiKeyId === first)).toEqual([
      expect.objectContaining({ by: admin.userId, byApiKeyId: admin.apiKeyId, revokedAt: revoked.data?.revokeApiKey.revokedAt }),
    ]);

    // Racing revocations of one key: one revokes it, the others are told the same time.
    const raced = await Promise.all(
      Array.from({ length: 6 }, (_, n) =>
        auth.gql<{ revokeApiKey: { revokedAt: string } }>(revokeApiKey, { id: second }, { token: n % 2 ? adminToken : merchantToken }),
      ),
    );
    expect(new Set(raced.map((result) => result.data?.revokeApiKey.revokedAt)).size).toBe(1);
    expect(lines('API key revoked').filter((line) => line.apiKeyId === second)).toHaveLength(1);
    expect(lines('API key already revoked: nothing changed').filter((line) => line.apiKeyId === second)).toHaveLength(5);
  });
});
