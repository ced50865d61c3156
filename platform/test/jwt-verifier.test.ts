import { randomUUID } from 'node:crypto';
import { type LoopbackServer, startLoopbackServer } from '@ghostpay/test-support';
import { type CryptoKey, exportJWK, exportSPKI, generateKeyPair, type JWK, SignJWT } from 'jose';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { createJwtVerifier, type JwtVerifier, ServiceUnavailableError, scopesByRole, UnauthenticatedError } from '../src/index.ts';

const issuer = 'ghostpay-auth';
const audience = 'ghostpay-api';
const now = () => Math.floor(Date.now() / 1000);
const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');

interface TestKey {
  kid: string;
  alg: 'RS256' | 'ES256' | 'EdDSA';
  privateKey: CryptoKey;
  publicKey: CryptoKey;
  jwk: JWK;
}

async function makeKey(alg: TestKey['alg']): Promise<TestKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true, ...(alg === 'EdDSA' ? { crv: 'Ed25519' } : {}) });
  const kid = randomUUID();
  return { kid, alg, privateKey, publicKey, jwk: { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' } };
}

const claims = (overrides: Record<string, unknown> = {}) => ({
  iss: issuer,
  aud: audience,
  sub: 'usr_test',
  role: 'merchant',
  scope: scopesByRole.merchant.join(' '),
  key_id: 'key_test',
  jti: randomUUID(),
  iat: now(),
  exp: now() + 900,
  ...overrides,
});

function sign(key: TestKey, payload: Record<string, unknown> = claims(), header: Record<string, unknown> = {}) {
  return new SignJWT(payload).setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'JWT', ...header }).sign(key.privateKey);
}

/** The error `verify` rejects with, or undefined when it resolves. */
function refusal(verifier: JwtVerifier, token: string): Promise<unknown> {
  return verifier.verify(token).then(
    () => undefined,
    (caught: unknown) => caught,
  );
}

/** Rejects with UNAUTHENTICATED, the only answer a bad token may get. */
async function expectUnauthenticated(verifier: JwtVerifier, token: string, message?: string | RegExp) {
  const error = await verifier.verify(token).then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(UnauthenticatedError);
  expect((error as UnauthenticatedError).extensions.code).toBe('UNAUTHENTICATED');
  if (message) expect((error as Error).message).toMatch(message);
}

describe('JWT verifier against a served JWKS', () => {
  const published: JWK[] = [];
  let fetches = 0;
  let server: LoopbackServer;
  let jwksUrl: string;
  let rsa: TestKey;
  let verifier: JwtVerifier;

  beforeAll(async () => {
    rsa = await makeKey('RS256');
    published.push(rsa.jwk, (await makeKey('ES256')).jwk);
    server = await startLoopbackServer((_req, res) => {
      fetches++;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ keys: published }));
    });
    jwksUrl = `${server.url}/.well-known/jwks.json`;
    verifier = createJwtVerifier({ jwksUrl, issuer, audience });
  });
  afterAll(() => server.close());

  it('accepts a well-formed token and returns its principal', async () => {
    const principal = await verifier.verify(await sign(rsa, claims({ sub: 'usr_a', key_id: 'key_a' })));
    expect(principal).toMatchObject({ userId: 'usr_a', role: 'merchant', apiKeyId: 'key_a', scopes: scopesByRole.merchant });
  });

  it('accepts ES256 and EdDSA keys from the set', async () => {
    for (const alg of ['ES256', 'EdDSA'] as const) {
      const key = await makeKey(alg);
      const local = createJwtVerifier({ jwks: { keys: [key.jwk] }, issuer, audience });
      expect((await local.verify(await sign(key))).userId).toBe('usr_test');
    }
  });

  it('rejects an unsigned token (alg: none)', async () => {
    const token = `${b64({ alg: 'none', typ: 'JWT', kid: rsa.kid })}.${b64(claims())}.`;
    await expectUnauthenticated(verifier, token);
    await expect(verifier.verifyAuthorization(`Bearer ${token}`)).rejects.toBeInstanceOf(UnauthenticatedError);
  });

  it('rejects an HS256 token whose HMAC key is the public key', async () => {
    const spki = await exportSPKI(rsa.publicKey);
    for (const secret of [spki, JSON.stringify(rsa.jwk)]) {
      const token = await new SignJWT(claims())
        .setProtectedHeader({ alg: 'HS256', kid: rsa.kid, typ: 'JWT' })
        .sign(new TextEncoder().encode(secret));
      await expectUnauthenticated(verifier, token, 'Token algorithm is not allowed');
    }
  });

  it('rejects an expired token, beyond the clock skew', async () => {
    await expectUnauthenticated(verifier, await sign(rsa, claims({ iat: now() - 1000, exp: now() - 60 })), 'Token has expired');
  });

  it('rejects a token that is not valid yet, beyond the clock skew', async () => {
    await expectUnauthenticated(verifier, await sign(rsa, claims({ nbf: now() + 120 })), /"nbf"/);
  });

  it('rejects a token older than a day (what auth never issues), whatever its exp says, and one issued in the future', async () => {
    // Signed with a trusted key but claiming a lifetime auth never grants (ACCESS_TOKEN_TTL_SECONDS ≤ 86 400): a forged token.
    const year = 365 * 86_400;
    await expectUnauthenticated(verifier, await sign(rsa, claims({ iat: now() - 86_400 - 120, exp: now() + year })), 'Token has expired');
    await expectUnauthenticated(verifier, await sign(rsa, claims({ iat: now() + 600, exp: now() + 900 })), 'Token claim "iat" is invalid');
    // A long-lived token is good only until a day after its iat: that is when the router ends its subscriptions.
    const principal = await verifier.verify(await sign(rsa, claims({ iat: now() - 60, exp: now() + year })));
    expect(principal.expiresAt).toBe(now() - 60 + 86_400);
    // Within the tolerance, and a day-long token near its end, still pass.
    await expect(verifier.verify(await sign(rsa, claims({ iat: now() + 5 })))).resolves.toBeDefined();
    await expect(verifier.verify(await sign(rsa, claims({ iat: now() - 86_390, exp: now() + 10 })))).resolves.toBeDefined();
  });

  it('tolerates a few seconds of clock skew', async () => {
    await expect(verifier.verify(await sign(rsa, claims({ nbf: now() + 5 })))).resolves.toBeDefined();
    await expect(verifier.verify(await sign(rsa, claims({ iat: now() - 900, exp: now() - 10 })))).resolves.toBeDefined();
  });

  it('rejects a wrong issuer and a wrong audience', async () => {
    await expectUnauthenticated(verifier, await sign(rsa, claims({ iss: 'someone-else' })), /"iss"/);
    await expectUnauthenticated(verifier, await sign(rsa, claims({ aud: 'another-api' })), /"aud"/);
  });

  it('rejects a token signed by a key the JWKS does not hold (unknown kid)', async () => {
    const stranger = await makeKey('RS256');
    await expectUnauthenticated(verifier, await sign(stranger), 'Token signing key is unknown');
    // Reusing a published kid does not help: the signature does not match that key.
    await expectUnauthenticated(verifier, await sign({ ...stranger, kid: rsa.kid }), 'Token signature is invalid');
  });

  it('ignores a key embedded in the token header', async () => {
    const attacker = await makeKey('RS256');
    const token = await sign(attacker, claims(), { kid: rsa.kid, jwk: attacker.jwk, jku: 'http://127.0.0.1:1/jwks.json' });
    await expectUnauthenticated(verifier, token);
  });

  it('rejects a tampered payload', async () => {
    const [header, , signature] = (await sign(rsa, claims({ role: 'user', scope: scopesByRole.user.join(' ') }))).split('.');
    const forged = `${header}.${b64(claims({ role: 'admin', scope: scopesByRole.admin.join(' ') }))}.${signature}`;
    await expectUnauthenticated(verifier, forged, 'Token signature is invalid');
  });

  it('rejects a signed token without the GhostPay claims', async () => {
    const { key_id: _k, ...withoutKeyId } = claims();
    await expectUnauthenticated(verifier, await sign(rsa, withoutKeyId), 'Token is missing required claims');
    await expectUnauthenticated(verifier, await sign(rsa, claims({ role: 'superuser' })), 'Token is missing required claims');
    const { jti: _j, ...withoutJti } = claims();
    await expectUnauthenticated(verifier, await sign(rsa, withoutJti), /"jti"/);
  });

  it('refetches the JWKS for an unknown kid, at most once per cooldown', async () => {
    const cooled = createJwtVerifier({ jwksUrl, issuer, audience, jwksCooldownMs: 60_000 });
    await cooled.verify(await sign(rsa));
    const added = await makeKey('RS256');
    published.push(added.jwk);
    // The first verify of this verifier fetched just now: within the cooldown an unknown kid is refused without a fetch.
    const before = fetches;
    await expectUnauthenticated(cooled, await sign(added), 'Token signing key is unknown');
    await expectUnauthenticated(cooled, await sign(added), 'Token signing key is unknown');
    expect(fetches - before).toBe(0);

    const eager = createJwtVerifier({ jwksUrl, issuer, audience, jwksCooldownMs: 0 });
    published.splice(published.indexOf(added.jwk), 1);
    await eager.verify(await sign(rsa));
    published.push(added.jwk);
    const fetchesBeforeRotation = fetches;
    expect((await eager.verify(await sign(added))).userId).toBe('usr_test');
    expect(fetches - fetchesBeforeRotation).toBe(1);
  });

  it('remembers a verified token for verifiedCacheTtlMs (never past its exp), then judges it again against the key set', async () => {
    const key = await makeKey('RS256');
    published.push(key.jwk);
    let clock = Date.now();
    // jwksCacheMaxAgeMs 1: without the verified-token cache, every verify would refetch the JWKS.
    const cached = createJwtVerifier({ jwksUrl, issuer, audience, jwksCooldownMs: 0, jwksCacheMaxAgeMs: 1, now: () => clock });
    const lasting = await sign(key, claims({ sub: 'usr_lasting' }));
    const shortLived = await sign(key, claims({ sub: 'usr_short', exp: now() + 5 }));
    expect((await cached.verify(lasting)).userId).toBe('usr_lasting');
    expect((await cached.verifyAuthorization(`Bearer ${shortLived}`))?.userId).toBe('usr_short');

    // The key is withdrawn. Within the TTL both tokens are answered from memory, without a fetch.
    published.splice(published.indexOf(key.jwk), 1);
    await new Promise((resolve) => setTimeout(resolve, 5));
    const before = fetches;
    expect((await cached.verify(lasting)).userId).toBe('usr_lasting');
    expect((await cached.verify(shortLived)).userId).toBe('usr_short');
    expect(fetches).toBe(before);

    // Past the short-lived token's exp (but within the TTL) it is judged again: the key is gone.
    clock += 6_000;
    await expectUnauthenticated(cached, shortLived, 'Token signing key is unknown');
    expect((await cached.verify(lasting)).userId).toBe('usr_lasting');
    // Past the TTL the lasting one is judged again too.
    clock += 30_000;
    await expectUnauthenticated(cached, lasting, 'Token signing key is unknown');
  });

  it('does not remember a token it refused', async () => {
    const key = await makeKey('RS256');
    const token = await sign(key);
    const eager = createJwtVerifier({ jwksUrl, issuer, audience, jwksCooldownMs: 0 });
    await expectUnauthenticated(eager, token, 'Token signing key is unknown');
    published.push(key.jwk);
    try {
      expect((await eager.verify(token)).userId).toBe('usr_test');
    } finally {
      published.splice(published.indexOf(key.jwk), 1);
    }
  });

  it('accepts only "Bearer <jwt>" in the Authorization header', async () => {
    expect(await verifier.verifyAuthorization(undefined)).toBeUndefined();
    const token = await sign(rsa);
    expect((await verifier.verifyAuthorization(`Bearer ${token}`))?.userId).toBe('usr_test');
    await expect(verifier.verifyAuthorization(`Basic ${token}`)).rejects.toBeInstanceOf(UnauthenticatedError);
    await expect(verifier.verifyAuthorization('Bearer not-a-jwt')).rejects.toBeInstanceOf(UnauthenticatedError);
  });
});

describe('JWT verifier when the key source is down', () => {
  it('answers SERVICE_UNAVAILABLE, not UNAUTHENTICATED, when the JWKS cannot be fetched or read', async () => {
    const key = await makeKey('RS256');
    const token = await sign(key);
    let answer: 'refuse' | 'error' | 'garbage' = 'error';
    const server = await startLoopbackServer((req, res) => {
      if (answer === 'error') {
        res.writeHead(500).end();
      } else if (answer === 'garbage') {
        res.writeHead(200, { 'content-type': 'application/json' }).end('{"not":"a key set"}');
      } else {
        req.socket.destroy();
      }
    });
    const jwksUrl = `${server.url}/.well-known/jwks.json`;
    try {
      for (const mode of ['error', 'garbage', 'refuse'] as const) {
        answer = mode;
        // A fresh verifier per mode: each has its own JWKS cache and cooldown.
        const verifier = createJwtVerifier({ jwksUrl, issuer, audience });
        const error = await verifier.verify(token).then(
          () => undefined,
          (caught: unknown) => caught,
        );
        expect(error, mode).toBeInstanceOf(ServiceUnavailableError);
        expect((error as ServiceUnavailableError).extensions.code, mode).toBe('SERVICE_UNAVAILABLE');
      }
    } finally {
      await server.close();
    }
  });
});

describe('JWT verifier when the JWKS goes down after it was fetched', () => {
  // Only Date is faked: jose stamps and ages its key set with Date.now, so the test can step
  // past the default 10-minute max age and 1-hour grace while the HTTP fetches stay real.
  afterEach(() => {
    vi.useRealTimers();
  });
  const advance = (ms: number) => vi.setSystemTime(Date.now() + ms);

  /** A JWKS server serving `keys`, answering 500 or dropping the connection while `down` says so. */
  async function flakyJwks(keys: JWK[]) {
    const state = { down: undefined as 'error' | 'refuse' | undefined, fetches: 0 };
    const server = await startLoopbackServer((req, res) => {
      state.fetches++;
      if (state.down === 'error') res.writeHead(500).end();
      else if (state.down === 'refuse') req.socket.destroy();
      else res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys }));
    });
    return Object.assign(state, { server, jwksUrl: `${server.url}/.well-known/jwks.json` });
  }

  function recordingFakeLogger() {
    const lines: { level: string; fields: unknown; message: string }[] = [];
    const at = (level: string) => (fields: unknown, message: string) => {
      lines.push({ level, fields, message });
    };
    return { lines, logger: { warn: at('warn'), info: at('info'), error: at('error') } as never };
  }

  for (const down of ['error', 'refuse'] as const) {
    it(`keeps verifying with the last key set for the grace past its max age while the JWKS ${down === 'error' ? 'answers 500' : 'drops connections'}, then refuses, then recovers`, async () => {
      vi.useFakeTimers({ toFake: ['Date'] });
      const key = await makeKey('RS256');
      const jwks = await flakyJwks([key.jwk]);
      const { lines, logger } = recordingFakeLogger();
      const verifier = createJwtVerifier({ jwksUrl: jwks.jwksUrl, issuer, audience, logger });
      try {
        expect((await verifier.verify(await sign(key))).userId).toBe('usr_test');
        expect(jwks.fetches).toBe(1);

        jwks.down = down;
        advance(601_000); // past the 600 s max age: jose must refetch, and cannot
        expect((await verifier.verify(await sign(key))).userId).toBe('usr_test');
        expect((await verifier.verify(await sign(key))).userId).toBe('usr_test');
        // One failed fetch; the next waits for the cooldown rather than one per request.
        expect(jwks.fetches).toBe(2);
        advance(31_000);
        expect((await verifier.verify(await sign(key))).userId).toBe('usr_test');
        await vi.waitFor(() => expect(jwks.fetches).toBe(3));
        expect(lines.map((line) => line.level)).toEqual(['warn']);

        advance(3_600_000); // past max age + the 1-hour grace
        const error = await refusal(verifier, await sign(key));
        expect(error).toBeInstanceOf(ServiceUnavailableError);
        expect((error as ServiceUnavailableError).extensions.code).toBe('SERVICE_UNAVAILABLE');

        jwks.down = undefined;
        expect((await verifier.verify(await sign(key))).userId).toBe('usr_test');
        expect(lines.map((line) => line.level)).toEqual(['warn', 'error', 'info']);
        // Where the keys come from, never the keys.
        expect(JSON.stringify(lines)).not.toContain(String(key.jwk.n));
      } finally {
        await jwks.server.close();
      }
    });
  }

  it('recovers within the grace once a background refetch succeeds', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const key = await makeKey('ES256');
    const jwks = await flakyJwks([key.jwk]);
    const { lines, logger } = recordingFakeLogger();
    const verifier = createJwtVerifier({ jwksUrl: jwks.jwksUrl, issuer, audience, logger });
    try {
      await verifier.verify(await sign(key));
      jwks.down = 'error';
      advance(601_000);
      await verifier.verify(await sign(key));
      jwks.down = undefined;
      advance(31_000);
      await verifier.verify(await sign(key)); // served from the stale set; refetches in the background
      await vi.waitFor(() => expect(lines.map((line) => line.level)).toEqual(['warn', 'info']));
      const before = jwks.fetches;
      await verifier.verify(await sign(key));
      expect(jwks.fetches).toBe(before);
    } finally {
      await jwks.server.close();
    }
  });

  it('does not accept a token whose kid the stale key set lacks', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const known = await makeKey('RS256');
    const published = [known.jwk];
    const jwks = await flakyJwks(published);
    const verifier = createJwtVerifier({ jwksUrl: jwks.jwksUrl, issuer, audience });
    try {
      await verifier.verify(await sign(known));
      // Auth publishes a new key, but this verifier cannot fetch it any more.
      const added = await makeKey('RS256');
      published.push(added.jwk);
      jwks.down = 'error';
      advance(601_000);
      expect((await verifier.verify(await sign(known))).userId).toBe('usr_test');
      for (const token of [await sign(added), await sign(await makeKey('RS256'))]) {
        const error = await refusal(verifier, token);
        expect(error).toBeInstanceOf(ServiceUnavailableError);
      }
      // A kid the set holds, with another key's signature, is still a bad token.
      await expectUnauthenticated(verifier, await sign({ ...added, kid: known.kid }), 'Token signature is invalid');
      // Back up: past the cooldown the unknown kid triggers a fetch and is accepted.
      jwks.down = undefined;
      advance(31_000);
      expect((await verifier.verify(await sign(added))).userId).toBe('usr_test');
    } finally {
      await jwks.server.close();
    }
  });
});
