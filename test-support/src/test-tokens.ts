import { randomUUID } from 'node:crypto';
import { createJwtVerifier, type JwtVerifier, type Role, scopesByRole } from '@ghostpay/platform';
import { exportJWK, generateKeyPair, type JSONWebKeySet, SignJWT } from 'jose';

export const testIssuer = 'https://auth.ghostpay.test';
export const testAudience = 'ghostpay-api';

export interface TestTokenIssuer {
  jwks: JSONWebKeySet;
  verifier: JwtVerifier;
  /** A signed RS256 access token for a user with the role's scopes (override any claim). */
  mint(claims: { userId: string; role: Role; apiKeyId?: string; scopes?: string[]; expiresInSeconds?: number }): Promise<string>;
  /** `Authorization` header value for `mint(claims)`. */
  bearer(claims: { userId: string; role: Role; apiKeyId?: string }): Promise<string>;
}

/**
 * Signs tokens exactly like the auth service (same claims, RS256, kid) with a throwaway key,
 * for testing services without running the auth subgraph. The auth subgraph's own tests
 * use the real key ring.
 */
export async function createTestTokenIssuer(): Promise<TestTokenIssuer> {
  const { privateKey, publicKey } = await generateKeyPair('RS256');
  const kid = `test-${randomUUID()}`;
  const jwk = { ...(await exportJWK(publicKey)), kid, alg: 'RS256', use: 'sig' };
  const jwks = { keys: [jwk] };
  const verifier = createJwtVerifier({ jwks, issuer: testIssuer, audience: testAudience });
  const mint: TestTokenIssuer['mint'] = async ({ userId, role, apiKeyId, scopes, expiresInSeconds = 900 }) =>
    new SignJWT({ role, scope: (scopes ?? scopesByRole[role]).join(' '), key_id: apiKeyId ?? `key_${userId}` })
      .setProtectedHeader({ alg: 'RS256', kid, typ: 'JWT' })
      .setIssuer(testIssuer)
      .setAudience(testAudience)
      .setSubject(userId)
      .setJti(randomUUID())
      .setIssuedAt()
      .setExpirationTime(Math.floor(Date.now() / 1000) + expiresInSeconds)
      .sign(privateKey);
  return { jwks, verifier, mint, bearer: async (claims) => `Bearer ${await mint(claims)}` };
}
