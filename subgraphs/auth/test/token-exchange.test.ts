import { apiKeys } from '@ghostpay/db';
import { createJwtVerifier, scopesByRole } from '@ghostpay/platform';
import { eq } from 'drizzle-orm';
import { decodeProtectedHeader } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AuthHarness, startAuth } from './auth-harness.ts';

const createToken = 'mutation ($apiKey: String!) { createToken(apiKey: $apiKey) { accessToken tokenType expiresIn scope } }';

describe('token exchange', () => {
  let auth: AuthHarness;
  beforeAll(async () => {
    auth = await startAuth({ env: { FAILED_EXCHANGE_LIMIT_PER_KEY: '3', FAILED_EXCHANGE_LIMIT_PER_ADDRESS: '1000' } });
  });
  afterAll(() => auth?.close());

  it('holds at most MAX_CONNECTIONS open connections, 10000 unless set', async () => {
    expect(auth.service.server.maxConnections).toBe(10_000);
    expect((await auth.replica({ MAX_CONNECTIONS: '250' })).server.maxConnections).toBe(250);
  });

  it('exchanges an API key for a token that platform verifies against the served JWKS', async () => {
    const merchant = await auth.seed('merchant');
    const result = await auth.gql<{ createToken: { accessToken: string; tokenType: string; expiresIn: number; scope: string } }>(
      createToken,
      {
        apiKey: merchant.apiKey,
      },
    );
    expect(result.errors).toBeUndefined();
    const issued = result.data!.createToken;
    expect(issued).toMatchObject({ tokenType: 'Bearer', expiresIn: 900, scope: scopesByRole.merchant.join(' ') });

    const verifier = createJwtVerifier({ jwksUrl: auth.jwksUrl, issuer: 'ghostpay-auth', audience: 'ghostpay-api' });
    const principal = await verifier.verify(issued.accessToken);
    expect(principal).toMatchObject({
      userId: merchant.userId,
      role: 'merchant',
      apiKeyId: merchant.apiKeyId,
      scopes: scopesByRole.merchant,
    });
    expect(principal.expiresAt - Math.floor(Date.now() / 1000)).toBeGreaterThan(890);

    const header = decodeProtectedHeader(issued.accessToken);
    expect(header).toMatchObject({ alg: 'RS256', typ: 'JWT' });
    const jwks = (await (await fetch(auth.jwksUrl)).json()) as { keys: { kid: string }[] };
    const [current] = (await auth.service.keyRing.keys()).filter((key) => key.state === 'current');
    expect(header.kid).toBe(current!.kid);
    expect(jwks.keys.map((key) => key.kid)).toContain(header.kid);
  });

  it('lets the token call the service itself and records when the key was last used', async () => {
    const user = await auth.seed('user');
    const before = await auth.database.db.select().from(apiKeys).where(eq(apiKeys.id, user.apiKeyId));
    expect(before[0]!.lastUsedAt).toBeNull();
    const token = await auth.token(user.apiKey);
    const me = await auth.gql<{ me: { id: string; role: string } }>('{ me { id role } }', {}, { token });
    expect(me.data?.me).toEqual({ id: user.userId, role: 'USER' });
    const after = await auth.database.db.select().from(apiKeys).where(eq(apiKeys.id, user.apiKeyId));
    expect(after[0]!.lastUsedAt).toBeInstanceOf(Date);
  });

  it('signs ES256 and EdDSA tokens when JWT_ALGORITHM asks for them', async () => {
    for (const algorithm of ['ES256', 'EdDSA']) {
      const other = await startAuth({ env: { JWT_ALGORITHM: algorithm } });
      try {
        const admin = await other.seed('admin');
        const token = await other.token(admin.apiKey);
        expect(decodeProtectedHeader(token).alg).toBe(algorithm);
        const verifier = createJwtVerifier({ jwksUrl: other.jwksUrl, issuer: 'ghostpay-auth', audience: 'ghostpay-api' });
        expect((await verifier.verify(token)).role).toBe('admin');
      } finally {
        await other.close();
      }
    }
  });

  it('answers an unknown key and a wrong secret identically', async () => {
    const merchant = await auth.seed('merchant');
    const prefix = merchant.apiKey.split('_')[1]!;
    const wrongSecret = `gp_${prefix}_${'A'.repeat(43)}`;
    const unknownPrefix = `gp_${'Z'.repeat(12)}_${merchant.apiKey.split('_')[2]}`;
    const wrong = await auth.gql(createToken, { apiKey: wrongSecret });
    const unknown = await auth.gql(createToken, { apiKey: unknownPrefix });
    const malformed = await auth.gql(createToken, { apiKey: 'not-a-key' });
    expect(wrong.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
    expect(unknown).toEqual(wrong);
    expect(malformed).toEqual(wrong);
    expect(JSON.stringify(wrong)).not.toContain(prefix);
  });

  it('refuses to mint with a revoked API key', async () => {
    const user = await auth.seed('user');
    const token = await auth.token(user.apiKey);
    const revoked = await auth.gql<{ revokeApiKey: { id: string; revokedAt: string } }>(
      'mutation ($id: ID!) { revokeApiKey(id: $id) { id revokedAt } }',
      { id: user.apiKeyId },
      { token },
    );
    expect(revoked.data?.revokeApiKey.revokedAt).toEqual(expect.any(String));
    const again = await auth.gql(createToken, { apiKey: user.apiKey });
    expect(again.data).toBeNull();
    expect(again.errors?.[0]).toMatchObject({ message: 'Invalid API key', extensions: { code: 'UNAUTHENTICATED' } });
  });

  it('rate limits failed exchanges per key prefix from one address, without locking out other keys', async () => {
    const target = await auth.seed('merchant');
    const bystander = await auth.seed('merchant');
    const prefix = target.apiKey.split('_')[1]!;
    for (let attempt = 0; attempt < 3; attempt++) {
      const result = await auth.gql(createToken, { apiKey: `gp_${prefix}_${'B'.repeat(43)}` });
      expect(result.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
    }
    const limited = await auth.gql(createToken, { apiKey: `gp_${prefix}_${'C'.repeat(43)}` });
    expect(limited.errors?.[0]?.extensions).toMatchObject({ code: 'RATE_LIMITED', retryAfter: expect.any(Number) });
    // The right secret is refused too while the prefix is limited: the limit must not be a correctness oracle.
    const correct = await auth.gql(createToken, { apiKey: target.apiKey });
    expect(correct.errors?.[0]?.extensions?.code).toBe('RATE_LIMITED');
    expect(await auth.token(bystander.apiKey)).toEqual(expect.any(String));
  });

  it('answers no more wrong guesses than the limit when they arrive at once', async () => {
    const target = await auth.seed('merchant');
    const prefix = target.apiKey.split('_')[1]!;
    // Sent together, every guess passes a check made before any failure is recorded unless the
    // decision to answer UNAUTHENTICATED is taken when the failure is counted.
    const results = await Promise.all(
      Array.from({ length: 40 }, (_, n) => auth.gql(createToken, { apiKey: `gp_${prefix}_${String(n).padStart(43, 'E')}` })),
    );
    const codes = results.map((result) => result.errors?.[0]?.extensions?.code);
    expect(codes.filter((code) => code === 'UNAUTHENTICATED')).toHaveLength(3);
    expect(codes.filter((code) => code === 'RATE_LIMITED')).toHaveLength(37);
    for (const result of results.filter((r) => r.errors?.[0]?.extensions?.code === 'RATE_LIMITED')) {
      expect(result.errors?.[0]?.extensions?.retryAfter).toEqual(expect.any(Number));
    }
    expect((await auth.gql(createToken, { apiKey: target.apiKey })).errors?.[0]?.extensions?.code).toBe('RATE_LIMITED');
  });
});

describe('failed-exchange limiting per client address', () => {
  let auth: AuthHarness;
  beforeAll(async () => {
    auth = await startAuth({ env: { FAILED_EXCHANGE_LIMIT_PER_ADDRESS: '4', TRUSTED_PROXY_HOPS: '1' } });
  });
  afterAll(() => auth?.close());

  it('limits an address that guesses across many prefixes, keyed by the trusted x-forwarded-for entry', async () => {
    const user = await auth.seed('user');
    const from = (address: string) => ({ headers: { 'x-forwarded-for': `203.0.113.99, ${address}` } });
    for (let attempt = 0; attempt < 4; attempt++) {
      const guess = `gp_${String(attempt).padStart(12, 'x')}_${'D'.repeat(43)}`;
      expect((await auth.gql(createToken, { apiKey: guess }, from('198.51.100.7'))).errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
    }
    const limited = await auth.gql(createToken, { apiKey: user.apiKey }, from('198.51.100.7'));
    expect(limited.errors?.[0]?.extensions?.code).toBe('RATE_LIMITED');
    // A forged left-most entry does not change the identity; another real address is not affected.
    const forged = await auth.gql(createToken, { apiKey: user.apiKey }, { headers: { 'x-forwarded-for': '10.9.9.9, 198.51.100.7' } });
    expect(forged.errors?.[0]?.extensions?.code).toBe('RATE_LIMITED');
    const other = await auth.gql<{ createToken: { accessToken: string } }>(createToken, { apiKey: user.apiKey }, from('198.51.100.8'));
    expect(other.data?.createToken.accessToken).toEqual(expect.any(String));
  });

  it('counts an IPv6 client by its /64, which one subscriber holds whole, and an IPv4-mapped address as the IPv4 one', async () => {
    const user = await auth.seed('user');
    const from = (address: string) => ({ headers: { 'x-forwarded-for': address } });
    // One failure from each of four addresses in the same /64, written in different forms.
    const addresses = ['2001:db8:7:9::1', '2001:0db8:0007:0009:ffff::2', '2001:db8:7:9:1:2:3:4', '2001:DB8:7:9::A'];
    for (const [n, address] of addresses.entries()) {
      const guess = `gp_${String(n).padStart(12, 'v')}_${'H'.repeat(43)}`;
      expect((await auth.gql(createToken, { apiKey: guess }, from(address))).errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
    }
    expect((await auth.gql(createToken, { apiKey: user.apiKey }, from('2001:db8:7:9:abcd::99'))).errors?.[0]?.extensions?.code).toBe(
      'RATE_LIMITED',
    );
    expect((await auth.gql(createToken, { apiKey: user.apiKey }, from('2001:db8:7:a::1'))).errors).toBeUndefined();

    for (let n = 0; n < 4; n++) {
      const guess = `gp_${String(n).padStart(12, 'w')}_${'H'.repeat(43)}`;
      await auth.gql(createToken, { apiKey: guess }, from(n % 2 ? '192.0.2.44' : '::ffff:192.0.2.44'));
    }
    expect((await auth.gql(createToken, { apiKey: user.apiKey }, from('192.0.2.44'))).errors?.[0]?.extensions?.code).toBe('RATE_LIMITED');
  });
});

describe('failed-exchange limiting of a key whose prefix anyone may know', () => {
  let auth: AuthHarness;
  beforeAll(async () => {
    auth = await startAuth({
      env: {
        FAILED_EXCHANGE_LIMIT_PER_KEY: '3',
        FAILED_EXCHANGE_LIMIT_PER_KEY_ALL_ADDRESSES: '6',
        FAILED_EXCHANGE_LIMIT_PER_ADDRESS: '1000',
        TRUSTED_PROXY_HOPS: '1',
      },
    });
  });
  afterAll(() => auth?.close());
  const from = (address: string) => ({ headers: { 'x-forwarded-for': address } });
  const codeOf = (result: { errors?: { extensions?: { code?: string } }[] }) => result.errors?.[0]?.extensions?.code;
  const guessAt = (prefix: string, n: number) => `gp_${prefix}_${String(n).padStart(43, 'J')}`;

  it("does not let one address's failures lock the owner out: the right secret from another address is issued a token", async () => {
    const owner = await auth.seed('merchant');
    const prefix = owner.apiKey.split('_')[1]!;
    const codes: unknown[] = [];
    for (let n = 0; n < 10; n++) codes.push(codeOf(await auth.gql(createToken, { apiKey: guessAt(prefix, n) }, from('198.51.100.66'))));
    expect(codes).toEqual([...Array(3).fill('UNAUTHENTICATED'), ...Array(7).fill('RATE_LIMITED')]);
    // The attacker's address is refused whatever it sends for this key: no oracle there.
    expect(codeOf(await auth.gql(createToken, { apiKey: owner.apiKey }, from('198.51.100.66')))).toBe('RATE_LIMITED');
    const owned = await auth.gql<{ createToken: { accessToken: string } }>(createToken, { apiKey: owner.apiKey }, from('203.0.113.5'));
    expect(owned.errors).toBeUndefined();
    expect(owned.data?.createToken.accessToken).toEqual(expect.any(String));
  });

  it('bounds guesses spread over many addresses: past the key-wide limit each address gets one failure, and the owner still mints', async () => {
    const owner = await auth.seed('merchant');
    const prefix = owner.apiKey.split('_')[1]!;
    const codesByAddress: unknown[][] = [];
    for (let a = 0; a < 6; a++) {
      const codes: unknown[] = [];
      for (let n = 0; n < 3; n++)
        codes.push(codeOf(await auth.gql(createToken, { apiKey: guessAt(prefix, a * 10 + n) }, from(`198.51.100.${a + 1}`))));
      codesByAddress.push(codes);
    }
    // The first two addresses use their whole budget (3 each: the key-wide 6); every later one fails once, then waits.
    expect(codesByAddress.slice(0, 2)).toEqual([Array(3).fill('UNAUTHENTICATED'), Array(3).fill('UNAUTHENTICATED')]);
    for (const codes of codesByAddress.slice(2)) expect(codes).toEqual(['UNAUTHENTICATED', 'RATE_LIMITED', 'RATE_LIMITED']);
    const limited = await auth.gql(createToken, { apiKey: owner.apiKey }, from('198.51.100.1'));
    expect(limited.errors?.[0]?.extensions).toMatchObject({ code: 'RATE_LIMITED', retryAfter: expect.any(Number) });
    // The owner, from an address that has not failed on the key, is issued a token.
    expect(codeOf(await auth.gql(createToken, { apiKey: owner.apiKey }, from('203.0.113.9')))).toBeUndefined();
  });

  it('answers at most the key-wide limit plus one failure per address when guesses from many addresses arrive at once', async () => {
    const owner = await auth.seed('merchant');
    const prefix = owner.apiKey.split('_')[1]!;
    const addresses = 20;
    const results = await Promise.all(
      Array.from({ length: addresses * 5 }, (_, n) =>
        auth.gql(createToken, { apiKey: guessAt(prefix, n) }, from(`192.0.2.${(n % addresses) + 1}`)),
      ),
    );
    const codes = results.map(codeOf);
    expect(codes.filter((code) => code !== 'UNAUTHENTICATED' && code !== 'RATE_LIMITED')).toEqual([]);
    expect(codes.filter((code) => code === 'UNAUTHENTICATED').length).toBeLessThanOrEqual(6 + addresses);
    expect(codeOf(await auth.gql(createToken, { apiKey: owner.apiKey }, from('203.0.113.10')))).toBeUndefined();
  });
});
