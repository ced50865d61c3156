import { apiKeys } from '@ghostpay/db';
import { eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRevokedKeys } from '../src/revoked-keys.ts';
import { createUserLookups } from '../src/users.ts';
import { type AuthHarness, startAuth } from './auth-harness.ts';

const revokeApiKey = 'mutation ($id: ID!) { revokeApiKey(id: $id) { id revokedAt } }';
const reads = {
  me: '{ me { id } }',
  user: 'query ($id: ID!) { user(id: $id) { id } }',
  users: '{ users(first: 1) { edges { node { id } } } }',
  entities: 'query ($r: [_Any!]!) { _entities(representations: $r) { ... on User { id } } }',
};

/** The error code and HTTP status of each read with `token`, as `name: CODE/status` (`ok/200` when answered). */
async function readsWith(auth: AuthHarness, token: string, userId: string): Promise<string[]> {
  const answers: string[] = [];
  for (const [name, query] of Object.entries(reads)) {
    const response = await fetch(`${auth.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify({ query, variables: { id: userId, r: [{ __typename: 'User', id: userId }] } }),
    });
    const body = (await response.json()) as { errors?: { extensions?: { code?: string } }[] };
    answers.push(`${name}: ${body.errors?.[0]?.extensions?.code ?? 'ok'}/${response.status}`);
  }
  return answers;
}

describe("a revoked API key's tokens at auth itself", () => {
  let auth: AuthHarness;
  beforeAll(async () => {
    auth = await startAuth();
  });
  afterAll(() => auth?.close());

  it('are refused for reads too, at once on the replica that revoked the key, and by another replica', async () => {
    const admin = await auth.seed('admin');
    const token = await auth.token(admin.apiKey);
    expect(await readsWith(auth, token, admin.userId)).toEqual(['me: ok/200', 'user: ok/200', 'users: ok/200', 'entities: ok/200']);
    const other = await auth.replica();
    // The key revokes itself with its own token: this replica checked it a moment ago and must not trust that now.
    expect((await auth.gql(revokeApiKey, { id: admin.apiKeyId }, { token })).errors).toBeUndefined();
    const refused = ['me: UNAUTHENTICATED/401', 'user: UNAUTHENTICATED/401', 'users: UNAUTHENTICATED/401', 'entities: UNAUTHENTICATED/401'];
    expect(await readsWith(auth, token, admin.userId)).toEqual(refused);
    // A replica that had not seen the key reads it fresh.
    expect(await readsWith({ ...auth, url: other.url }, token, admin.userId)).toEqual(refused);
    // Another key of the same user is unaffected.
    const fresh = await auth.seed('admin');
    expect(await readsWith(auth, await auth.token(fresh.apiKey), fresh.userId)).toEqual([
      'me: ok/200',
      'user: ok/200',
      'users: ok/200',
      'entities: ok/200',
    ]);
  });

  it('are read once per key per TTL however many requests ask at once, and read again once forgotten', async () => {
    const user = await auth.seed('user');
    const lookups = createUserLookups(auth.database.db);
    let reads = 0;
    const revokedKeys = createRevokedKeys(
      {
        apiKeysByIds: (ids, values) => {
          reads++;
          return lookups.apiKeysByIds(ids, values);
        },
      },
      { ttlMs: 60_000 },
    );
    const answers = await Promise.all(Array.from({ length: 50 }, () => revokedKeys.isRevoked(user.apiKeyId)));
    expect(answers.every((revoked) => revoked === false)).toBe(true);
    expect(reads).toBe(1);
    await auth.database.db.update(apiKeys).set({ revokedAt: sql`now()` }).where(eq(apiKeys.id, user.apiKeyId));
    // Within the TTL the remembered answer stands (another replica revoked it); forgetting it reads again.
    expect(await revokedKeys.isRevoked(user.apiKeyId)).toBe(false);
    expect(reads).toBe(1);
    revokedKeys.forget(user.apiKeyId);
    expect(await revokedKeys.isRevoked(user.apiKeyId)).toBe(true);
    expect(reads).toBe(2);
    // An unknown key and an id no row can hold are not revoked (auth's mutations refuse unknown keys themselves).
    expect(await revokedKeys.isRevoked('key_unknown')).toBe(false);
    expect(await revokedKeys.isRevoked('key_\u0000')).toBe(false);
  });
});
