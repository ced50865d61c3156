import { createLocalJWKSet, createRemoteJWKSet, type JSONWebKeySet, type JWTPayload, errors as joseErrors, jwtVerify } from 'jose';
import { ServiceUnavailableError, UnauthenticatedError } from './errors.ts';
import { isRole, type Principal } from './scopes.ts';

/** Asymmetric algorithms a token may be signed with; never `none`, never HMAC. */
export const allowedAlgorithms = ['RS256', 'ES256', 'EdDSA'] as const;
export type SigningAlgorithm = (typeof allowedAlgorithms)[number];

export interface JwtVerifierOptions {
  /** Where the JWKS is served (the auth service's `/.well-known/jwks.json`). */
  jwksUrl?: string | URL;
  /** A fixed key set instead of a URL (tests, tools). */
  jwks?: JSONWebKeySet;
  issuer: string;
  audience: string;
  /** @default ['RS256', 'ES256', 'EdDSA'] */
  algorithms?: readonly SigningAlgorithm[];
  /** Allowed clock skew in seconds for exp/nbf/iat. @default 30 */
  clockToleranceSeconds?: number;
  /** Shortest time between two JWKS refetches triggered by an unknown `kid`. @default 30000 */
  jwksCooldownMs?: number;
  /** How long a fetched JWKS is trusted before a background refetch. @default 600000 */
  jwksCacheMaxAgeMs?: number;
  /**
   * Verified tokens remembered (by their exact text), so a client sending the same token on
   * every request costs one signature check per `verifiedCacheTtlMs` rather than one per
   * request. Only successes are kept, never past the token's `exp`. 0 turns it off. @default 10000
   */
  verifiedCacheSize?: number;
  /** How long a verified token is remembered; keep it well under `jwksCacheMaxAgeMs`. @default 30000 */
  verifiedCacheTtlMs?: number;
  /** @default Date.now */
  now?: () => number;
}

export interface JwtVerifier {
  /** Verifies a compact JWT and returns its principal; throws UnauthenticatedError with a reason. */
  verify(token: string): Promise<Principal>;
  /** Verifies the value of an `Authorization` header; undefined when there is none. */
  verifyAuthorization(header: string | undefined): Promise<Principal | undefined>;
}

/**
 * The single JWT verifier the router and every subgraph use. `jku`, `x5u` and embedded
 * `jwk` headers are never followed: keys come only from the configured JWKS.
 */
export function createJwtVerifier(options: JwtVerifierOptions): JwtVerifier {
  const algorithms = [...(options.algorithms ?? allowedAlgorithms)];
  const keys = options.jwks
    ? createLocalJWKSet(options.jwks)
    : options.jwksUrl
      ? createRemoteJWKSet(new URL(options.jwksUrl), {
          cooldownDuration: options.jwksCooldownMs ?? 30_000,
          cacheMaxAge: options.jwksCacheMaxAgeMs ?? 600_000,
          timeoutDuration: 5_000,
        })
      : undefined;
  if (!keys) throw new Error('createJwtVerifier needs jwksUrl or jwks');

  const verify = async (token: string): Promise<Principal> => {
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, keys, {
        issuer: options.issuer,
        audience: options.audience,
        algorithms,
        clockTolerance: options.clockToleranceSeconds ?? 30,
        requiredClaims: ['exp', 'iat', 'sub', 'jti'],
      }));
    } catch (error) {
      // The token may be fine; the keys to judge it could not be had. Blaming the caller's
      // credentials (401) would send clients to re-authenticate against an outage.
      if (isKeySourceFailure(error)) throw new ServiceUnavailableError('Token signing keys are temporarily unavailable');
      throw new UnauthenticatedError(describeJoseError(error));
    }
    const role = payload.role;
    const scope = payload.scope;
    const apiKeyId = payload.key_id;
    if (!isRole(role) || typeof scope !== 'string' || typeof apiKeyId !== 'string' || typeof payload.sub !== 'string') {
      throw new UnauthenticatedError('Token is missing required claims');
    }
    // Frozen: a remembered principal is shared by every request that presents the same token.
    return Object.freeze({
      userId: payload.sub,
      role,
      scopes: Object.freeze(scope.split(' ').filter(Boolean)) as string[],
      apiKeyId,
      tokenId: String(payload.jti),
      expiresAt: Number(payload.exp),
    });
  };

  const cacheSize = options.verifiedCacheSize ?? 10_000;
  const cacheTtlMs = options.verifiedCacheTtlMs ?? 30_000;
  const now = options.now ?? Date.now;
  // Insertion-ordered: the first entry is the oldest, evicted when the cache is full.
  const verified = new Map<string, { principal: Principal; until: number }>();
  const verifyCached = async (token: string): Promise<Principal> => {
    if (cacheSize <= 0) return verify(token);
    const hit = verified.get(token);
    if (hit) {
      if (now() < hit.until) return hit.principal;
      verified.delete(token);
    }
    const principal = await verify(token);
    // Never past exp: an expired token goes back to jose, which judges it with the clock tolerance.
    const until = Math.min(now() + cacheTtlMs, principal.expiresAt * 1000);
    if (until > now()) {
      if (verified.size >= cacheSize) verified.delete(verified.keys().next().value as string);
      verified.set(token, { principal, until });
    }
    return principal;
  };

  return {
    verify: verifyCached,
    async verifyAuthorization(header) {
      if (!header) return undefined;
      const match = /^Bearer\s+([A-Za-z0-9\-_]+\.[A-Za-z0-9\-_]*\.[A-Za-z0-9\-_]*)\s*$/i.exec(header);
      if (!match?.[1]) throw new UnauthenticatedError('Authorization header must be "Bearer <token>"');
      return verifyCached(match[1]);
    },
  };
}

/** The JWKS could not be fetched or read: a timeout, a refused connection, a non-200 answer, a broken body. */
function isKeySourceFailure(error: unknown): boolean {
  if (error instanceof joseErrors.JWKSTimeout || error instanceof joseErrors.JWKSInvalid) return true;
  if (error instanceof joseErrors.JOSEError && error.code === 'ERR_JOSE_GENERIC' && /JSON Web Key Set/.test(error.message)) return true;
  return error instanceof TypeError && /fetch/i.test(error.message);
}

function describeJoseError(error: unknown): string {
  if (error instanceof joseErrors.JWTExpired) return 'Token has expired';
  if (error instanceof joseErrors.JWTClaimValidationFailed) return `Token claim "${error.claim}" is invalid`;
  if (error instanceof joseErrors.JWKSNoMatchingKey) return 'Token signing key is unknown';
  if (error instanceof joseErrors.JOSEAlgNotAllowed) return 'Token algorithm is not allowed';
  if (error instanceof joseErrors.JWSSignatureVerificationFailed) return 'Token signature is invalid';
  return 'Token is invalid';
}
