import { randomBytes } from 'node:crypto';
import { apiKeys } from '@ghostpay/db';
import { createSecretsProvider } from '@ghostpay/platform';
import { and, eq, isNull, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKeyEncryption } from '../src/key-encryption.ts';
import { type AuthHarness, startAuth } from './auth-harness.ts';

const createApiKey = 'mutation ($userId: ID!) { createApiKey(userId: $userId) { apiKey { id } secret } }';
const revokeApiKey = 'mutation ($id: ID!) { revokeApiKey(id: $id) { id revokedAt } }';
const codeOf = (result: { errors?: { extensions?: { code?: string } }[] }) => result.errors?.[0]?.extensions?.code;

describe('API key limits and revocation', () => {
  let auth: AuthHarness;
  beforeAll(async () => {
    auth = await startAuth({ env: { MAX_API_KEYS_PER_USER: '3' } });
  });
  afterAll(() => auth?.close());

  const activeKeys = async (userId: string) =>
    (
      await auth.database.db
        .select({ n: sql<number>`count(*)::int` })
        .from(apiKeys)
        .where(and(eq(apiKeys.userId, userId), isNull(apiKeys.revokedAt)))
    )[0]!.n;

  it('caps the unrevoked keys a user creates for themselves, exactly, when the creations race', async () => {
    const seeded = await auth.seed('merchant');
    const token = await auth.token(seeded.apiKey);
    // One key from seeding; eight concurrent creations may add two more.
    const attempts = await Promise.all(
      Array.from({ length: 8 }, () =>
        auth.gql<{ createApiKey: { apiKey: { id: string } } }>(createApiKey, { userId: seeded.userId }, { token }),
      ),
    );
    const created = attempts.filter((attempt) => attempt.data?.createApiKey);
    expect(created).toHaveLength(2);
    expect(attempts.filter((attempt) => codeOf(attempt) === 'FORBIDDEN')).toHaveLength(6);
    expect(attempts.find((attempt) => attempt.errors)?.errors?.[0]?.message).toMatch(/at most 3 active API keys/);
    expect(await activeKeys(seeded.userId)).toBe(3);

    // Revoking one frees a place.
    const revoked = await auth.gql(revokeApiKey, { id: created[0]!.data!.createApiKey.apiKey.id }, { token });
    expect(revoked.errors).toBeUndefined();
    expect((await auth.gql(createApiKey, { userId: seeded.userId }, { token })).errors).toBeUndefined();
    expect(codeOf(await auth.gql(createApiKey, { userId: seeded.userId }, { token }))).toBe('FORBIDDEN');
    expect(await activeKeys(seeded.userId)).toBe(3);

    // An admin provisioning keys for a user is not capped.
    const admin = await auth.seed('admin');
    const adminToken = await auth.token(admin.apiKey);
    expect((await auth.gql(createApiKey, { userId: seeded.userId }, { token: adminToken })).errors).toBeUndefined();
    expect(await activeKeys(seeded.userId)).toBe(4);
  });

  it('refuses credential mutations to a token whose API key was revoked, keeping the other keys as they were', async () => {
    const seeded = await auth.seed('user');
    const ownerToken = await auth.token(seeded.apiKey);
    const second = await auth.gql<{ createApiKey: { apiKey: { id: string }; secret: string } }>(
      createApiKey,
      { userId: seeded.userId },
      { token: ownerToken },
    );
    const leakedToken = await auth.token(second.data!.createApiKey.secret);
    expect((await auth.gql(revokeApiKey, { id: second.data!.createApiKey.apiKey.id }, { token: ownerToken })).errors).toBeUndefined();

    // The leaked key's token is still a valid JWT until it expires, but it can no longer mint or revoke keys.
    const minted = await auth.gql(createApiKey, { userId: seeded.userId }, { token: leakedToken });
    expect(codeOf(minted)).toBe('UNAUTHENTICATED');
    const revokedOwners = await auth.gql(revokeApiKey, { id: seeded.apiKeyId }, { token: leakedToken });
    expect(codeOf(revokedOwners)).toBe('UNAUTHENTICATED');
    expect(await activeKeys(seeded.userId)).toBe(1);
    // The owner's own token keeps working.
    expect((await auth.gql(createApiKey, { userId: seeded.userId }, { token: ownerToken })).errors).toBeUndefined();
  });

  it('refuses admin mutations to an admin token whose API key was revoked', async () => {
    const admin = await auth.seed('admin');
    const token = await auth.token(admin.apiKey);
    await auth.database.db.update(apiKeys).set({ revokedAt: new Date() }).where(eq(apiKeys.id, admin.apiKeyId));
    const createUser = await auth.gql(
      'mutation { createUser(input: {name: "X", email: "revoked-admin@example.test", role: ADMIN}) { user { id } } }',
      {},
      { token },
    );
    expect(codeOf(createUser)).toBe('UNAUTHENTICATED');
    expect(codeOf(await auth.gql('mutation { rotateSigningKey { kid } }', {}, { token }))).toBe('UNAUTHENTICATED');
  });
});

describe('signing-key encryption', () => {
  const encryption = createKeyEncryption(
    createSecretsProvider({ env: { GHOSTPAY_SECRET_SIGNING_KEK: `k1:${randomBytes(32).toString('base64')}` } }),
  );

  it('decrypts what it encrypted, and refuses a truncated or altered tag', () => {
    const { ciphertext, kekId } = encryption.encrypt('kid_1', 'private key material');
    expect(encryption.decrypt('kid_1', kekId, ciphertext)).toBe('private key material');
    const [version, iv, tag, body] = ciphertext.split('.') as [string, string, string, string];
    const tagBytes = Buffer.from(tag, 'base64');
    // GCM would accept a 4-byte tag prefix if the decipher were not told the tag length.
    const truncated = [version, iv, tagBytes.subarray(0, 4).toString('base64'), body].join('.');
    expect(() => encryption.decrypt('kid_1', kekId, truncated)).toThrow(/unreadable ciphertext/);
    tagBytes[0]! ^= 1;
    const altered = [version, iv, tagBytes.toString('base64'), body].join('.');
    expect(() => encryption.decrypt('kid_1', kekId, altered)).toThrow();
    expect(() => encryption.decrypt('kid_2', kekId, ciphertext)).toThrow();
  });
});
