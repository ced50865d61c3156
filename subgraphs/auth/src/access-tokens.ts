import { randomUUID } from 'node:crypto';
import { type Role, scopesByRole } from '@ghostpay/platform';
import { SignJWT } from 'jose';
import type { SigningKeyRing } from './signing-key-ring.ts';

export interface AccessTokenOptions {
  keyRing: SigningKeyRing;
  issuer: string;
  audience: string;
  ttlSeconds: number;
}

export interface AccessToken {
  accessToken: string;
  tokenType: 'Bearer';
  /** Seconds until the token expires. */
  expiresIn: number;
  scope: string;
}

/** A freshly signed token and what names it in an audit line (never the token itself). */
export interface IssuedAccessToken {
  token: AccessToken;
  /** The `jti` claim. */
  tokenId: string;
  /** The signing key's id (`kid` header). */
  kid: string;
  /** The `exp` claim, seconds since the epoch. */
  expiresAt: number;
}

/**
 * Mints access tokens with the ring's current key. Claims match what platform's
 * `createJwtVerifier` requires: iss, aud, sub, role, scope (space separated), key_id, jti,
 * iat, exp, and `kid` in the header.
 */
export function createAccessTokenIssuer(options: AccessTokenOptions) {
  return {
    async issue(subject: { userId: string; role: Role; apiKeyId: string }): Promise<IssuedAccessToken> {
      const { kid, alg, privateKey } = await options.keyRing.signingKey();
      const scope = scopesByRole[subject.role].join(' ');
      const issuedAt = Math.floor(Date.now() / 1000);
      const tokenId = randomUUID();
      const expiresAt = issuedAt + options.ttlSeconds;
      const accessToken = await new SignJWT({ role: subject.role, scope, key_id: subject.apiKeyId })
        .setProtectedHeader({ alg, kid, typ: 'JWT' })
        .setIssuer(options.issuer)
        .setAudience(options.audience)
        .setSubject(subject.userId)
        .setJti(tokenId)
        .setIssuedAt(issuedAt)
        .setExpirationTime(expiresAt)
        .sign(privateKey);
      return { token: { accessToken, tokenType: 'Bearer', expiresIn: options.ttlSeconds, scope }, tokenId, kid, expiresAt };
    },
  };
}

export type AccessTokenIssuer = ReturnType<typeof createAccessTokenIssuer>;
