import { apiKeys, users } from '@ghostpay/db';
import { scopesByRole } from '@ghostpay/platform';
import { poolStatementsOf } from '@ghostpay/test-support';
import { eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AuthHarness, startAuth } from './auth-harness.ts';

const createUser = `mutation ($input: CreateUserInput!) {
  createUser(input: $input) { user { id name email role createdAt } apiKey { id prefix rateLimitPerMinute revokedAt } secret }
}`;
const createApiKey =
  'mutation ($userId: ID!, $limit: Int) { createApiKey(userId: $userId, rateLimitPerMinute: $limit) { apiKey { id prefix } secret } }';
const revokeApiKey = 'mutation ($id: ID!) { revokeApiKey(id: $id) { id revokedAt } }';
const listUsers =
  'query ($first: Int, $after: String) { users(first: $first, after: $after) { edges { cursor node { id } } pageInfo { hasNextPage endCursor } } }';

const codeOf = (result: { errors?: { extensions?: { code?: string } }[] }) => result.errors?.[0]?.extensions?.code;
const countUsers = async (auth: AuthHarness) => (await auth.database.db.select({ n: sql<number>`count(*)::int` }).from(users))[0]!.n;

describe('users and API keys', () => {
  let auth: AuthHarness;
  const tokens: Record<'admin' | 'merchant' | 'user', string> = { admin: '', merchant: '', user: '' };
  const ids: Record<'admin' | 'merchant' | 'user', string> = { admin: '', merchant: '', user: '' };
  beforeAll(async () => {
    auth = await startAuth();
    for (const role of ['admin', 'merchant', 'user'] as const) {
      const seeded = await auth.seed(role);
      ids[role] = seeded.userId;
      tokens[role] = await auth.token(seeded.apiKey);
    }
  });
  afterAll(() => auth?.close());

  it('lets an admin create a user whose API key, shown once, mints a token with the role scopes', async () => {
    const result = await auth.gql<{
      createUser: {
        user: { id: string; role: string; email: string };
        apiKey: { prefix: string; rateLimitPerMinute: number };
        secret: string;
      };
    }>(
      createUser,
      { input: { name: 'Shop One', email: 'Shop.One@Example.test', role: 'MERCHANT', rateLimitPerMinute: 120 } },
      { token: tokens.admin },
    );
    expect(result.errors).toBeUndefined();
    const { user, apiKey, secret } = result.data!.createUser;
    expect(user).toMatchObject({ role: 'MERCHANT', email: 'shop.one@example.test' });
    expect(apiKey.rateLimitPerMinute).toBe(120);
    expect(secret).toMatch(new RegExp(`^gp_${apiKey.prefix}_[0-9A-Za-z]{43}$`));
    const minted = await auth.gql<{ createToken: { scope: string } }>('mutation ($k: String!) { createToken(apiKey: $k) { scope } }', {
      k: secret,
    });
    expect(minted.data?.createToken.scope).toBe(scopesByRole.merchant.join(' '));
    // Only the hash is stored.
    const stored = await auth.database.db.select().from(apiKeys).where(eq(apiKeys.prefix, apiKey.prefix));
    expect(stored[0]!.secretHash).toMatch(/^[0-9a-f]{64}$/);
    expect(JSON.stringify(stored)).not.toContain(secret.split('_')[2]);
  });

  it('refuses a taken email (any case) and invalid input with BAD_USER_INPUT, writing nothing', async () => {
    const before = await countUsers(auth);
    const taken = await auth.gql(
      createUser,
      { input: { name: 'Again', email: 'SHOP.ONE@example.test', role: 'USER' } },
      { token: tokens.admin },
    );
    expect(codeOf(taken)).toBe('BAD_USER_INPUT');
    expect(taken.errors?.[0]?.extensions?.fields).toEqual([{ field: 'input.email', message: 'is already in use' }]);
    const invalid = await auth.gql(
      createUser,
      { input: { name: ' ', email: 'nope', role: 'USER', rateLimitPerMinute: 0 } },
      { token: tokens.admin },
    );
    expect(codeOf(invalid)).toBe('BAD_USER_INPUT');
    const fields = ((invalid.errors?.[0]?.extensions?.fields ?? []) as { field: string }[]).map((problem) => problem.field).sort();
    expect(fields).toEqual(['input.email', 'input.name', 'input.rateLimitPerMinute']);
    expect(await countUsers(auth)).toBe(before);
  });

  it.each(['merchant', 'user'] as const)('refuses admin-only operations to a %s with FORBIDDEN', async (role) => {
    const token = tokens[role];
    const attempts = [
      await auth.gql(createUser, { input: { name: 'X', email: `x-${role}@example.test`, role: 'ADMIN' } }, { token }),
      await auth.gql(listUsers, {}, { token }),
      await auth.gql('mutation { rotateSigningKey { kid } }', {}, { token }),
      await auth.gql(createApiKey, { userId: ids.admin }, { token }),
      await auth.gql(createApiKey, { userId: ids[role], limit: 100000 }, { token }),
    ];
    for (const attempt of attempts) expect(codeOf(attempt)).toBe('FORBIDDEN');
  });

  it('asks for a token on everything but createToken', async () => {
    expect(codeOf(await auth.gql('{ me { id } }'))).toBe('UNAUTHENTICATED');
    expect(codeOf(await auth.gql(createApiKey, { userId: ids.user }))).toBe('UNAUTHENTICATED');
    expect(codeOf(await auth.gql('{ me { id } }', {}, { token: `${tokens.user}x` }))).toBe('UNAUTHENTICATED');
  });

  it('lets a user create and revoke their own key, but not revoke or see anyone else’s', async () => {
    const created = await auth.gql<{ createApiKey: { apiKey: { id: string }; secret: string } }>(
      createApiKey,
      { userId: ids.user },
      { token: tokens.user },
    );
    expect(created.errors).toBeUndefined();
    const keyId = created.data!.createApiKey.apiKey.id;
    expect(await auth.token(created.data!.createApiKey.secret)).toEqual(expect.any(String));

    expect(codeOf(await auth.gql(revokeApiKey, { id: keyId }, { token: tokens.merchant }))).toBe('NOT_FOUND');
    const merchantView = await auth.gql(
      `query ($id: ID!) { user(id: $id) { id apiKeys { id } } }`,
      { id: ids.user },
      { token: tokens.merchant },
    );
    expect(codeOf(merchantView)).toBe('FORBIDDEN');

    const revoked = await auth.gql<{ revokeApiKey: { revokedAt: string } }>(revokeApiKey, { id: keyId }, { token: tokens.user });
    const again = await auth.gql<{ revokeApiKey: { revokedAt: string } }>(revokeApiKey, { id: keyId }, { token: tokens.user });
    expect(again.data?.revokeApiKey.revokedAt).toBe(revoked.data?.revokeApiKey.revokedAt);
    const mine = await auth.gql<{ me: { apiKeys: { id: string; revokedAt: string | null }[] } }>(
      '{ me { apiKeys { id revokedAt } } }',
      {},
      { token: tokens.user },
    );
    expect(mine.data?.me.apiKeys.find((key) => key.id === keyId)?.revokedAt).toEqual(expect.any(String));
  });

  it('answers ids no row can have and names with control characters as the caller’s mistake, not INTERNAL_SERVER_ERROR', async () => {
    // PostgreSQL refuses a NUL byte in text: unchecked, each of these was a 500 and an error log.
    const nul = 'usr_\u0000';
    const lookup = await auth.gql('query ($id: ID!) { user(id: $id) { id } }', { id: nul }, { token: tokens.admin });
    expect(lookup).toEqual({ data: { user: null } });
    expect(codeOf(await auth.gql(revokeApiKey, { id: 'key_\u0000' }, { token: tokens.user }))).toBe('NOT_FOUND');
    expect(codeOf(await auth.gql(createApiKey, { userId: nul }, { token: tokens.admin }))).toBe('NOT_FOUND');
    const entities = await auth.gql(
      'query ($r: [_Any!]!) { _entities(representations: $r) { ... on User { id } ... on ApiKey { id } } }',
      {
        r: [
          { __typename: 'User', id: nul },
          { __typename: 'ApiKey', id: 'key_\u0000' },
        ],
      },
      { token: tokens.admin },
    );
    expect(entities).toEqual({ data: { _entities: [null, null] } });

    const before = await countUsers(auth);
    for (const name of ['Shop\u0000Two', 'Line\nbreak', 'evil\u202Egnp.exe', 'lone \uD800 surrogate']) {
      const result = await auth.gql(
        createUser,
        { input: { name, email: `odd-${before}@example.test`, role: 'USER' } },
        { token: tokens.admin },
      );
      expect(codeOf(result), JSON.stringify(name)).toBe('BAD_USER_INPUT');
      expect(result.errors?.[0]?.extensions?.fields).toEqual([{ field: 'input.name', message: expect.any(String) }]);
    }
    expect(await countUsers(auth)).toBe(before);
    // Letters of any script, and the joiners some need, stay welcome.
    const named = await auth.gql<{ createUser: { user: { name: string } } }>(
      createUser,
      { input: { name: 'Zoë 山田 میخواهم', email: `intl-${before}@example.test`, role: 'USER' } },
      { token: tokens.admin },
    );
    expect(named.data?.createUser.user.name).toBe('Zoë 山田 میخواهم');
  });

  it('pages through every user exactly once with opaque cursors', async () => {
    for (let n = 0; n < 4; n++) await auth.seed('user');
    const total = await countUsers(auth);
    const seen: string[] = [];
    let after: string | null = null;
    for (let page = 0; page < 20; page++) {
      const result: {
        data?: {
          users: { edges: { cursor: string; node: { id: string } }[]; pageInfo: { hasNextPage: boolean; endCursor: string | null } };
        } | null;
      } = await auth.gql(listUsers, { first: 3, after }, { token: tokens.admin });
      const connection = result.data!.users;
      seen.push(...connection.edges.map((edge) => edge.node.id));
      for (const edge of connection.edges) expect(edge.cursor).not.toContain(edge.node.id);
      if (!connection.pageInfo.hasNextPage) break;
      after = connection.pageInfo.endCursor;
    }
    expect(seen).toHaveLength(total);
    expect(new Set(seen).size).toBe(total);
    expect(codeOf(await auth.gql(listUsers, { after: 'garbage' }, { token: tokens.admin }))).toBe('BAD_USER_INPUT');
    expect(codeOf(await auth.gql(listUsers, { first: 1000 }, { token: tokens.admin }))).toBe('BAD_USER_INPUT');
  });

  it('resolves User and ApiKey entity references in one query per batch, hiding others’ keys', async () => {
    const representations = [
      { __typename: 'User', id: ids.user },
      { __typename: 'User', id: ids.admin },
      { __typename: 'User', id: ids.merchant },
      { __typename: 'User', id: 'usr_missing' },
    ];
    const query = 'query ($r: [_Any!]!) { _entities(representations: $r) { ... on User { id role } ... on ApiKey { id prefix } } }';
    await auth.gql('{ me { id } }', {}, { token: tokens.merchant }); // warm the key-ring verifier
    /** The `_entities` answer for `r`, and the texts of the users statements it sent. */
    const resolveUsers = async (r: unknown[]) => {
      const { result, statements } = await poolStatementsOf(auth.database.pool!, () =>
        auth.gql<{ _entities: ({ id: string; role: string } | null)[] }>(query, { r }, { token: tokens.merchant }),
      );
      return { entities: result.data?._entities, texts: statements.filter((text) => /from "auth"\."users"/.test(text)) };
    };
    const all = await resolveUsers(representations);
    expect(all.entities).toEqual([
      { id: ids.user, role: 'USER' },
      { id: ids.admin, role: 'ADMIN' },
      { id: ids.merchant, role: 'MERCHANT' },
      null,
    ]);
    expect(all.texts).toHaveLength(1);
    // One statement text whatever the batch size (one prepared statement per connection), and
    // a plain equality for one id.
    expect(all.texts[0]).toMatch(/from "auth"\."users" where "auth"\."users"\."id" = any\(\$1::text\[\]\)$/i);
    const two = await resolveUsers([representations[3], representations[1]]);
    expect(two.entities).toEqual([null, { id: ids.admin, role: 'ADMIN' }]);
    expect(two.texts).toEqual(all.texts);
    const one = await resolveUsers([representations[2]]);
    expect(one.entities).toEqual([{ id: ids.merchant, role: 'MERCHANT' }]);
    expect(one.texts).toHaveLength(1);
    expect(one.texts[0]).toMatch(/from "auth"\."users" where "auth"\."users"\."id" = \$1$/i);

    const userKeys = await auth.gql<{ me: { apiKeys: { id: string }[] } }>('{ me { apiKeys { id } } }', {}, { token: tokens.user });
    const keyId = userKeys.data!.me.apiKeys[0]!.id;
    const asMerchant = await auth.gql<{ _entities: unknown[] }>(
      query,
      { r: [{ __typename: 'ApiKey', id: keyId }] },
      { token: tokens.merchant },
    );
    expect(asMerchant.data?._entities).toEqual([null]);
    const asOwner = await auth.gql<{ _entities: { id: string }[] }>(
      query,
      { r: [{ __typename: 'ApiKey', id: keyId }] },
      { token: tokens.user },
    );
    expect(asOwner.data?._entities[0]?.id).toBe(keyId);
  });
});
