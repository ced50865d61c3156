import { createDatabase, signingKeys } from '@ghostpay/db';
import { createJwtVerifier, createLogger, createSecretsProvider, isErrorCode, type JwtVerifier } from '@ghostpay/platform';
import { eq, inArray, type SQLWrapper, sql } from 'drizzle-orm';
import { compactVerify, decodeProtectedHeader, exportJWK, generateKeyPair, importJWK, type JSONWebKeySet, type JWK, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAuthService } from '../src/index.ts';
import { type AuthHarness, randomKek, startAuth, testConfig } from './auth-harness.ts';

const issuer = 'ghostpay-auth';
const audience = 'ghostpay-api';
const rotate = 'mutation { rotateSigningKey { kid state verifyUntil } }';
const kidOf = (token: string) => decodeProtectedHeader(token).kid;

async function fetchJwks(url: string): Promise<JSONWebKeySet> {
  return (await (await fetch(url)).json()) as JSONWebKeySet;
}

/** JWKS_MAX_AGE_SECONDS (60) + the verifiers' refetch cooldown (30) + their fetch timeout (5). */
const spacing = 95;

/**
 * Moves the next and current keys' times back, as if the previous rotation had happened that long
 * ago, so the next rotation is not refused as too soon.
 */
async function ageRing(auth: AuthHarness, seconds = 3600) {
  await auth.database.db
    .update(signingKeys)
    .set({
      createdAt: sql`${signingKeys.createdAt} - make_interval(secs => ${seconds})`,
      activatedAt: sql`${signingKeys.activatedAt} - make_interval(secs => ${seconds})`,
    })
    .where(inArray(signingKeys.state, ['next', 'current']));
}

async function ringStates(auth: AuthHarness) {
  const keys = await auth.service.keyRing.keys();
  return {
    current: keys.filter((key) => key.state === 'current').map((key) => key.kid),
    next: keys.filter((key) => key.state === 'next').map((key) => key.kid),
    retired: keys.filter((key) => key.state === 'retired').map((key) => key.kid),
    removed: keys.filter((key) => key.state === 'removed').map((key) => key.kid),
  };
}

describe('signing key rotation', () => {
  const kek = `k1:${randomKek()}`;
  let auth: AuthHarness;
  let admin: { userId: string; apiKey: string };
  beforeAll(async () => {
    auth = await startAuth({ kek });
    admin = await auth.seed('admin');
  });
  afterAll(() => auth?.close());

  it('creates a current and a next key on first start, both published, private halves encrypted', async () => {
    const ring = await ringStates(auth);
    expect(ring.current).toHaveLength(1);
    expect(ring.next).toHaveLength(1);
    const jwks = await fetchJwks(auth.jwksUrl);
    expect(jwks.keys.map((key) => key.kid).sort()).toEqual([...ring.current, ...ring.next].sort());
    for (const key of jwks.keys) {
      expect(key).toMatchObject({ kty: 'RSA', alg: 'RS256', use: 'sig' });
      expect(key).not.toHaveProperty('d');
    }
    const rows = await auth.database.db.select().from(signingKeys);
    for (const row of rows) {
      expect(row.kekId).toBe('k1');
      expect(row.privateKeyCiphertext).toMatch(/^v1\./);
      expect(Buffer.from(row.privateKeyCiphertext.split('.')[3]!, 'base64').toString('latin1')).not.toContain('PRIVATE KEY');
    }
  });

  it('serves the JWKS with a short public cache and an ETag that changes on rotation', async () => {
    const first = await fetch(auth.jwksUrl);
    expect(first.headers.get('cache-control')).toBe('public, max-age=60');
    const etag = first.headers.get('etag')!;
    expect(etag).toMatch(/^".+"$/);
    const revalidated = await fetch(auth.jwksUrl, { headers: { 'if-none-match': etag } });
    expect(revalidated.status).toBe(304);
    await ageRing(auth);
    await auth.service.keyRing.rotate();
    const after = await fetch(auth.jwksUrl, { headers: { 'if-none-match': etag } });
    expect(after.status).toBe(200);
    expect(after.headers.get('etag')).not.toBe(etag);
  });

  it('answers another method than GET or HEAD on the JWKS with 405, Allow and a code from the closed list', async () => {
    for (const method of ['POST', 'PUT', 'DELETE']) {
      const response = await fetch(auth.jwksUrl, { method });
      expect(response.status, method).toBe(405);
      expect(response.headers.get('allow'), method).toBe('GET, HEAD');
      const { error } = (await response.json()) as { error: { code: string } };
      expect(isErrorCode(error.code), error.code).toBe(true);
    }
  });

  it('keeps verifying a token minted before a rotation until its key is removed, while new tokens carry the new kid', async () => {
    const before = await auth.token(admin.apiKey);
    const oldKid = kidOf(before);
    const snapshot = await fetchJwks(auth.jwksUrl);
    const {
      next: [nextKid],
    } = await ringStates(auth);

    const adminToken = before;
    await ageRing(auth);
    const rotated = await auth.gql<{ rotateSigningKey: { kid: string; state: string; verifyUntil: string | null }[] }>(
      rotate,
      {},
      { token: adminToken },
    );
    expect(rotated.errors).toBeUndefined();
    const retired = rotated.data!.rotateSigningKey.find((key) => key.kid === oldKid);
    expect(retired?.state).toBe('RETIRED');
    // Published for one token lifetime plus clock skew after retirement.
    const [row] = await auth.database.db
      .select({
        seconds: sql<number>`extract(epoch from ${signingKeys.verifyUntil} - ${signingKeys.retiredAt})::float8`,
        ciphertext: signingKeys.privateKeyCiphertext,
      })
      .from(signingKeys)
      .where(eq(signingKeys.kid, oldKid!));
    expect(row).toEqual({ seconds: 900 + 30, ciphertext: '' });

    const after = await auth.token(admin.apiKey);
    expect(kidOf(after)).toBe(nextKid);
    // A verifier holding the JWKS from before the rotation already knows the new key.
    const cached = createJwtVerifier({ jwks: snapshot, issuer, audience });
    await expect(cached.verify(after)).resolves.toMatchObject({ userId: admin.userId });
    const fresh = createJwtVerifier({ jwksUrl: auth.jwksUrl, issuer, audience });
    await expect(fresh.verify(before)).resolves.toMatchObject({ userId: admin.userId });
    await expect(fresh.verify(after)).resolves.toMatchObject({ userId: admin.userId });

    // Time passes beyond verify_until: the key leaves the JWKS and the next rotation marks it removed.
    await auth.database.db.update(signingKeys).set({ verifyUntil: sql`now() - interval '1 second'` }).where(eq(signingKeys.kid, oldKid!));
    expect((await fetchJwks(auth.jwksUrl)).keys.map((key) => key.kid)).not.toContain(oldKid);
    await ageRing(auth);
    await auth.service.keyRing.rotate();
    expect((await ringStates(auth)).removed).toContain(oldKid);
    const later = createJwtVerifier({ jwksUrl: auth.jwksUrl, issuer, audience });
    await expect(later.verify(before)).rejects.toMatchObject({
      extensions: { code: 'UNAUTHENTICATED' },
      message: 'Token signing key is unknown',
    });
  });

  it('never fails a token request or a verification while a rotation happens', async () => {
    const verifier: JwtVerifier = createJwtVerifier({ jwksUrl: auth.jwksUrl, issuer, audience, jwksCooldownMs: 600_000 });
    await verifier.verify(await auth.token(admin.apiKey)); // caches the JWKS once; no refetch later
    await ageRing(auth);
    const minting = Array.from({ length: 12 }, () => auth.token(admin.apiKey));
    const rotation = auth.service.keyRing.rotate();
    const tokens = await Promise.all(minting);
    await rotation;
    tokens.push(await auth.token(admin.apiKey));
    const principals = await Promise.all(tokens.map((token) => verifier.verify(token)));
    expect(principals).toHaveLength(13);
  });

  it('lets exactly one of concurrent rotations from two replicas through, refusing the others as too soon', async () => {
    const replica = await auth.replica();
    await ageRing(auth);
    const before = await ringStates(auth);
    const results = await Promise.allSettled([
      auth.service.keyRing.rotate(),
      replica.keyRing.rotate(),
      auth.service.keyRing.rotate(),
      replica.keyRing.rotate(),
    ]);
    expect(results.filter((result) => result.status === 'fulfilled')).toHaveLength(1);
    for (const result of results.filter((r) => r.status === 'rejected')) {
      // Judged under the lock by database time: the later ones see a next key published a moment ago.
      expect(result.reason).toMatchObject({ extensions: { code: 'RATE_LIMITED', retryAfter: expect.any(Number) } });
      expect(result.reason.extensions.retryAfter).toBeGreaterThan(spacing - 10);
      expect(result.reason.extensions.retryAfter).toBeLessThanOrEqual(spacing);
    }
    const after = await ringStates(auth);
    expect(after.current).toEqual(before.next);
    expect(after.next).toHaveLength(1);
    expect(after.retired).toEqual(expect.arrayContaining(before.current));
    expect(after.retired.length + after.removed.length).toBe(before.retired.length + before.removed.length + 1);
  });

  it('refuses a second rotation within the spacing, so a verifier that fetched the JWKS before the first keeps verifying', async () => {
    await ageRing(auth);
    // ageRing lets the tests rotate faster than real time allows; auth's own verifier re-reads the
    // key set on an unknown kid at most once a second, so give it that second.
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    // A verifier that fetched the key set just now: it may not refetch for 30 s.
    const verifier = createJwtVerifier({ jwksUrl: auth.jwksUrl, issuer, audience });
    await verifier.verify(await auth.token(admin.apiKey));
    const token = await auth.token(admin.apiKey);
    const first = await auth.gql(rotate, {}, { token });
    expect(first.errors).toBeUndefined();
    // The key the first rotation made current was published an hour ago: the verifier knows it.
    await expect(verifier.verify(await auth.token(admin.apiKey))).resolves.toMatchObject({ userId: admin.userId });

    const second = await auth.gql(rotate, {}, { token });
    expect(second.data).toBeNull();
    expect(second.errors?.[0]?.extensions).toMatchObject({ code: 'RATE_LIMITED', retryAfter: expect.any(Number) });
    expect(second.errors?.[0]?.extensions?.retryAfter).toBeGreaterThan(spacing - 10);
    expect(second.errors?.[0]?.message).toMatch(/at most once per 95 s.*retry in \d+ s/);
    await expect(auth.service.keyRing.rotate()).rejects.toMatchObject({ extensions: { code: 'RATE_LIMITED' } });
    // Had it rotated, this token would be signed by a key published after the verifier's fetch, and refused.
    await expect(verifier.verify(await auth.token(admin.apiKey))).resolves.toMatchObject({ userId: admin.userId });

    // The spacing counts from when the next key was published.
    await ageRing(auth, spacing - 30);
    await expect(auth.service.keyRing.rotate()).rejects.toMatchObject({
      extensions: { code: 'RATE_LIMITED', retryAfter: expect.any(Number) },
    });
    const retryAfter = await auth.service.keyRing
      .rotate()
      .catch((error: { extensions: { retryAfter: number } }) => error.extensions.retryAfter);
    expect(retryAfter).toBeGreaterThanOrEqual(29);
    expect(retryAfter).toBeLessThanOrEqual(31);
    await ageRing(auth, 31);
    await expect(auth.service.keyRing.rotate()).resolves.toMatchObject({ rotated: true });
  });

  it('holds a scheduled rotation back while the next key is younger than the spacing, without an error', async () => {
    await ageRing(auth);
    await auth.service.keyRing.rotate();
    const before = await ringStates(auth);
    // Due by the interval (any age is ≥ 0), but the next key was published a moment ago.
    await expect(auth.service.keyRing.rotate({ onlyIfOlderThanSeconds: 0 })).resolves.toMatchObject({ rotated: false });
    expect(await ringStates(auth)).toEqual(before);
  });

  it('publishes a next key instead of making an unpublished key current when the next key is missing', async () => {
    await ageRing(auth);
    const before = await ringStates(auth);
    await auth.database.db.delete(signingKeys).where(eq(signingKeys.state, 'next'));
    await expect(auth.service.keyRing.rotate()).rejects.toMatchObject({ extensions: { code: 'RATE_LIMITED', retryAfter: spacing } });
    const after = await ringStates(auth);
    expect(after.current).toEqual(before.current);
    expect(after.next).toHaveLength(1);
    expect(after.next).not.toEqual(before.next);
    expect((await fetchJwks(auth.jwksUrl)).keys.map((key) => key.kid)).toContain(after.next[0]);
    await ageRing(auth);
    await expect(auth.service.keyRing.rotate()).resolves.toMatchObject({ rotated: true });
    expect((await ringStates(auth)).current).toEqual(after.next);
  });

  it('stamps a rotation with database time after the ring lock is held, not when its transaction began', async (context) => {
    if (!auth.database.url) context.skip(); // needs a second connection: real PostgreSQL
    await ageRing(auth);
    const [old] = (await ringStates(auth)).current;
    const epoch = (column: SQLWrapper) => sql<number>`extract(epoch from ${column})::float8`;
    // Another replica holds the ring lock for 1.5 s; this rotation's transaction begins meanwhile and waits.
    const holder = await createDatabase({ url: auth.database.url, poolSize: 1 });
    try {
      let rotation: Promise<unknown> | undefined;
      const releasedAt = await holder.db.transaction(async (tx) => {
        await tx.execute(sql`select pg_advisory_xact_lock(hashtext('ghostpay.auth.signing_keys'))`);
        rotation = auth.service.keyRing.rotate();
        await new Promise((resolve) => setTimeout(resolve, 1_500));
        const [row] = await tx
          .select({ at: epoch(sql`clock_timestamp()`) })
          .from(signingKeys)
          .limit(1);
        return row!.at;
      });
      await rotation;
      const [row] = await auth.database.db
        .select({ retiredAt: epoch(signingKeys.retiredAt), verifyUntil: epoch(signingKeys.verifyUntil) })
        .from(signingKeys)
        .where(eq(signingKeys.kid, old!));
      // The old key signed tokens until the rotation committed: it stays published a full TTL + skew after that.
      expect(row!.retiredAt).toBeGreaterThanOrEqual(releasedAt);
      expect(row!.verifyUntil - row!.retiredAt).toBeCloseTo(900 + 30, 3);
    } finally {
      await holder.close();
    }
  });

  it('never makes current a next key that cannot be decrypted (its KEK dropped too early): the current key keeps signing', async () => {
    await ageRing(auth);
    const before = await ringStates(auth);
    await auth.database.db.update(signingKeys).set({ kekId: 'k0' }).where(eq(signingKeys.state, 'next'));
    await expect(auth.service.keyRing.rotate()).rejects.toMatchObject({
      extensions: { code: 'SERVICE_UNAVAILABLE' },
      message: expect.stringMatching(/next signing key .* cannot be decrypted with signing-kek \(KEK "k0"\)/),
    });
    expect(await ringStates(auth)).toEqual(before);
    expect(kidOf(await auth.token(admin.apiKey))).toBe(before.current[0]);
    // Deleting the unusable next key lets a rotation publish a new one, to sign once the spacing has passed.
    await auth.database.db.delete(signingKeys).where(eq(signingKeys.state, 'next'));
    await expect(auth.service.keyRing.rotate()).rejects.toMatchObject({ extensions: { code: 'RATE_LIMITED' } });
    await ageRing(auth);
    await expect(auth.service.keyRing.rotate()).resolves.toMatchObject({ rotated: true });
    expect(await auth.token(admin.apiKey)).toEqual(expect.any(String));
  });

  it('keeps signing after the KEK rotates, encrypting new keys under the new KEK', async () => {
    const replica = await auth.replica({ KEK: `k2:${randomKek()},${kek}` });
    await ageRing(auth);
    await replica.keyRing.rotate();
    const keys = await auth.database.db.select().from(signingKeys).where(eq(signingKeys.state, 'next'));
    expect(keys[0]!.kekId).toBe('k2');
    // The current key was encrypted under k1, which the keyring still holds.
    const token = await replica.keyRing.signingKey();
    expect(token.kid).toEqual(expect.any(String));
    await expect(auth.replica({ KEK: `k3:${randomKek()}` }).then((lost) => lost.keyRing.signingKey())).rejects.toThrow(/KEK "k1"/);
  });
});

describe('scheduled rotation', () => {
  const interval = { SIGNING_KEY_ROTATION_INTERVAL_SECONDS: '3600' };

  it('rotates when the current key is older than SIGNING_KEY_ROTATION_INTERVAL_SECONDS, checking at start', async () => {
    const auth = await startAuth({ env: interval });
    try {
      const [initial] = (await ringStates(auth)).current;
      await ageRing(auth, 3_590);
      await auth.replica(); // checks at start: not due yet
      expect((await ringStates(auth)).current).toEqual([initial]);
      await ageRing(auth, 10);
      await auth.replica(); // checks at start: due, and the next key has been published an hour
      const deadline = Date.now() + 5_000;
      let current = initial;
      while (current === initial && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        [current] = (await ringStates(auth)).current;
      }
      expect(current).not.toBe(initial);
    } finally {
      await auth.close();
    }
  });

  it('waits, when closing, for a scheduled check in progress', async (context) => {
    const auth = await startAuth({ env: interval });
    if (!auth.database.url) {
      await auth.close();
      context.skip(); // the lock is held from a second connection: real PostgreSQL
    }
    const holder = await createDatabase({ url: auth.database.url, poolSize: 1 });
    const secrets = createSecretsProvider({ env: { GHOSTPAY_SECRET_SIGNING_KEK: `k1:${randomKek()}` } });
    try {
      const service = createAuthService({
        database: auth.database,
        secrets,
        config: testConfig(interval),
        logger: createLogger({ service: 'auth', level: 'silent' }),
      });
      await service.keyRing.ensure(); // the ring exists: start() will not need the lock before listening
      let closed = false;
      let closing: Promise<void> | undefined;
      await holder.db.transaction(async (tx) => {
        await tx.execute(sql`select pg_advisory_xact_lock(hashtext('ghostpay.auth.signing_keys'))`);
        await service.start(0); // its check at start now waits for the ring lock
        closing = service.close().then(() => {
          closed = true;
        });
        await new Promise((resolve) => setTimeout(resolve, 300));
        expect(closed).toBe(false);
      });
      await closing;
      expect(closed).toBe(true);
    } finally {
      secrets.close();
      await holder.close();
      await auth.close();
    }
  });
});

describe('the first rotation of a new ring', () => {
  it('goes through at once: its next key is in every key set ever served; the one after waits the spacing', async () => {
    const auth = await startAuth({ kek: `k1:${randomKek()}` });
    try {
      const first = await ringStates(auth);
      // A verifier that fetched the key set at first start: the only set there has been.
      const verifier = createJwtVerifier({ jwksUrl: auth.jwksUrl, issuer, audience });
      const admin = await auth.seed('admin');
      await verifier.verify(await auth.token(admin.apiKey));
      await expect(auth.service.keyRing.rotate()).resolves.toMatchObject({ rotated: true });
      expect((await ringStates(auth)).current).toEqual(first.next);
      await expect(verifier.verify(await auth.token(admin.apiKey))).resolves.toMatchObject({ userId: admin.userId });
      // The new next key was published a moment ago, after sets that lacked it were served.
      await expect(auth.service.keyRing.rotate()).rejects.toMatchObject({ extensions: { code: 'RATE_LIMITED' } });
    } finally {
      await auth.close();
    }
  });
});

describe('the published key set', () => {
  it('holds only the public members of each key, whatever its row holds', async () => {
    const auth = await startAuth({ kek: `k1:${randomKek()}` });
    try {
      // Rows holding more than a public key (a bug, a hand-made row, a restored backup): a private
      // JWK of each algorithm, and a symmetric key, which has no public half at all.
      const planted: JWK[] = [];
      for (const alg of ['RS256', 'ES256', 'EdDSA'] as const) {
        const { privateKey } = await generateKeyPair(alg, { extractable: true, ...(alg === 'EdDSA' ? { crv: 'Ed25519' } : {}) });
        planted.push({ ...(await exportJWK(privateKey)), kid: `planted-${alg}`, alg, use: 'sig', key_ops: ['sign'], ext: true });
      }
      planted.push({ kty: 'oct', k: randomKek(), kid: 'planted-oct', alg: 'HS256', use: 'sig' });
      for (const jwk of planted) expect(JSON.stringify(jwk)).toMatch(/"(d|k)":/);
      await auth.database.db.insert(signingKeys).values(
        planted.map((jwk) => ({
          kid: jwk.kid!,
          alg: jwk.alg!,
          state: 'retired' as const,
          publicJwk: jwk,
          privateKeyCiphertext: '',
          kekId: 'k1',
          retiredAt: new Date(),
          verifyUntil: sql`now() + interval '1 hour'`,
        })),
      );

      const served = await fetchJwks(auth.jwksUrl);
      const publicMembers: Record<string, string[]> = { RSA: ['e', 'n'], EC: ['crv', 'x', 'y'], OKP: ['crv', 'x'] };
      expect(served.keys.map((key) => key.kid).sort()).toEqual(
        [...(await ringStates(auth)).current, ...(await ringStates(auth)).next, 'planted-EdDSA', 'planted-ES256', 'planted-RS256'].sort(),
      );
      // Every member of every served key, by name: nothing but the public key and its names.
      for (const key of served.keys) {
        expect(Object.keys(key).sort(), key.kid).toEqual(['alg', 'kid', 'kty', 'use', ...publicMembers[key.kty as string]!].sort());
        for (const value of Object.values(key)) expect(typeof value, key.kid).toBe('string');
      }
      // What was served still verifies what the private halves sign.
      const [rsa] = planted;
      const signed = await new SignJWT({}).setProtectedHeader({ alg: 'RS256', kid: rsa!.kid }).sign(await importJWK(rsa!, 'RS256'));
      await expect(
        compactVerify(signed, await importJWK(served.keys.find((key) => key.kid === rsa!.kid)!, 'RS256')),
      ).resolves.toBeDefined();
    } finally {
      await auth.close();
    }
  });
});
