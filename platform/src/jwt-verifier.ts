import {
  type CryptoKey,
  createLocalJWKSet,
  createRemoteJWKSet,
  customFetch,
  type ExportedJWKSCache,
  type FlattenedJWSInput,
  type JSONWebKeySet,
  type JWKSCacheInput,
  type JWSHeaderParameters,
  type JWTPayload,
  errors as joseErrors,
  jwksCache,
  jwtVerify,
} from 'jose';
import { Agent, fetch as undiciFetch } from 'undici';
import { ServiceUnavailableError, UnauthenticatedError } from './errors.ts';
import type { Logger } from './logger.ts';
import { isRole, type Principal } from './scopes.ts';
import { type ClientTlsFiles, clientTlsOptions } from './tls.ts';

/** Asymmetric algorithms a token may be signed with; never `none`, never HMAC. */
export const allowedAlgorithms = ['RS256', 'ES256', 'EdDSA'] as const;
export type SigningAlgorithm = (typeof allowedAlgorithms)[number];

/**
 * Default least time between two JWKS fetches for an unknown `kid` (`jwksCooldownMs`). The auth
 * service spaces signing-key rotations by it: a verifier must be allowed to refetch before a key
 * published after its last fetch starts signing.
 */
export const defaultJwksCooldownMs = 30_000;
/** How long a JWKS fetch may take; the cooldown runs from when a fetch ends, not when it read the set. */
export const jwksFetchTimeoutMs = 5_000;

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
  /** How long a fetched JWKS is used before the next verify refetches it. @default 600000 */
  jwksCacheMaxAgeMs?: number;
  /**
   * While the JWKS cannot be fetched (auth down, a partition), how long past `jwksCacheMaxAgeMs`
   * the last key set fetched is still used; after that every token is refused with
   * SERVICE_UNAVAILABLE, as when nothing was ever fetched. Safe because auth withdraws a key only
   * once every token it signed has expired; a `kid` that set lacks is never accepted from it.
   * 0 turns it off. @default 3600000 (1 hour; platform/README.md says why)
   */
  jwksStaleGraceMs?: number;
  /** Told once when tokens start being checked against the stale key set, and once when a fetch works again. */
  logger?: Pick<Logger, 'warn' | 'info' | 'error'>;
  /**
   * Client certificate (and CA) presented when fetching the JWKS, for an auth service that
   * demands client certificates (mTLS). The files are read at every fetch, so a renewed
   * certificate is used without a restart. Absent → a plain fetch.
   */
  jwksTls?: ClientTlsFiles;
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
  /**
   * The oldest a token may be (now − `iat`, with the clock tolerance), whatever its `exp` says:
   * auth issues none living longer (`ACCESS_TOKEN_TTL_SECONDS` ≤ 86 400), so a token that claims
   * more was not made by it (a forged one, signed with a leaked key). A token whose `iat` is in
   * the future, beyond the tolerance, is refused too. @default 86400
   */
  maxTokenAgeSeconds?: number;
}

export interface JwtVerifier {
  /** Verifies a compact JWT and returns its principal; throws UnauthenticatedError with a reason. */
  verify(token: string): Promise<Principal>;
  /** Verifies the value of an `Authorization` header; undefined when there is none. */
  verifyAuthorization(header: string | undefined): Promise<Principal | undefined>;
}

/**
 * `verifier` with one more check on every principal it returns, by both methods: `check` throws
 * (an UnauthenticatedError, a GhostPayError) to refuse a token the signature and claims allow,
 * such as one whose API key has been revoked (the router's and auth's `refusingRevokedKeys`).
 */
export function checkingPrincipals(verifier: JwtVerifier, check: (principal: Principal) => Promise<void>): JwtVerifier {
  const checked = async (principal: Principal) => {
    await check(principal);
    return principal;
  };
  return {
    verify: async (token) => checked(await verifier.verify(token)),
    verifyAuthorization: async (header) => {
      const principal = await verifier.verifyAuthorization(header);
      return principal ? checked(principal) : undefined;
    },
  };
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
      ? createRemoteKeys(new URL(options.jwksUrl), {
          cooldownMs: options.jwksCooldownMs ?? defaultJwksCooldownMs,
          cacheMaxAgeMs: options.jwksCacheMaxAgeMs ?? 600_000,
          staleGraceMs: options.jwksStaleGraceMs ?? 3_600_000,
          logger: options.logger,
          tls: options.jwksTls,
        })
      : undefined;
  if (!keys) throw new Error('createJwtVerifier needs jwksUrl or jwks');

  const maxTokenAgeSeconds = options.maxTokenAgeSeconds ?? 86_400;
  const verify = async (token: string): Promise<Principal> => {
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, keys, {
        issuer: options.issuer,
        audience: options.audience,
        algorithms,
        clockTolerance: options.clockToleranceSeconds ?? 30,
        maxTokenAge: maxTokenAgeSeconds,
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
      // Good until its exp or until it is too old, whichever comes first (remembered tokens and open subscriptions end then).
      expiresAt: Math.min(Number(payload.exp), Number(payload.iat) + maxTokenAgeSeconds),
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

type KeyResolver = (header: JWSHeaderParameters, token: FlattenedJWSInput) => Promise<CryptoKey>;

/**
 * jose's remote key set, plus a fallback for when refetching it fails: the last set fetched
 * (which jose records in its `jwksCache` slot) keeps verifying tokens for `staleGraceMs` past
 * its max age. During such an outage a verify does not wait on the JWKS: it is refetched in
 * the background, one attempt at a time and at most one per cooldown, and the first success
 * ends the outage. A `kid` the stale set lacks waits for that attempt, then is refused
 * (SERVICE_UNAVAILABLE: it may be a key auth published since).
 */
function createRemoteKeys(
  url: URL,
  options: {
    cooldownMs: number;
    cacheMaxAgeMs: number;
    staleGraceMs: number;
    logger: JwtVerifierOptions['logger'];
    tls: ClientTlsFiles | undefined;
  },
): KeyResolver {
  const { cooldownMs, cacheMaxAgeMs, staleGraceMs, logger, tls } = options;
  // jose writes the JSON and time (Date.now) of every successful fetch here.
  const lastGood: Partial<ExportedJWKSCache> = {};
  const remote = createRemoteJWKSet(url, {
    cooldownDuration: cooldownMs,
    cacheMaxAge: cacheMaxAgeMs,
    timeoutDuration: jwksFetchTimeoutMs,
    [jwksCache]: lastGood as JWKSCacheInput,
    ...(tls ? { [customFetch]: tlsJwksFetch(tls) } : {}),
  });
  let staleSet: { uat: number; keys: KeyResolver } | undefined;
  /** Set while fetching fails: the failure to answer with, and when the next attempt may start. */
  let outage: { error: unknown; retryAt: number } | undefined;
  /** What was logged: 'stale' once a token was verified against the stale set, 'expired' once its grace ran out. */
  let logged: 'nothing' | 'stale' | 'expired' = 'nothing';
  let refreshing: Promise<boolean> | undefined;

  /** The last good set while within its grace, else undefined. */
  const staleKeys = (): KeyResolver | undefined => {
    const { uat, jwks } = lastGood;
    if (uat === undefined || jwks === undefined) return undefined;
    if (Date.now() >= uat + cacheMaxAgeMs + staleGraceMs) {
      if (logged === 'stale') {
        logged = 'expired';
        logger?.error(
          { jwksUrl: url.href, fetchedAt: new Date(uat).toISOString() },
          'JWKS still unreachable and the stale key set is past its grace; refusing tokens',
        );
      }
      return undefined;
    }
    if (staleSet?.uat !== uat) staleSet = { uat, keys: createLocalJWKSet(jwks) };
    return staleSet.keys;
  };
  const failed = (error: unknown) => {
    outage = { error, retryAt: Date.now() + cooldownMs };
  };
  const noteRecovery = () => {
    if (!remote.fresh) return;
    outage = undefined;
    if (logged !== 'nothing') {
      logged = 'nothing';
      logger?.info({ jwksUrl: url.href }, 'JWKS fetched again; tokens are checked against the current key set');
    }
  };
  /** Resolves true when a refetch succeeded; false at once when none may start yet. */
  const refresh = (): Promise<boolean> => {
    if (!refreshing && outage && Date.now() >= outage.retryAt) {
      refreshing = remote.reload().then(
        () => {
          noteRecovery();
          return true;
        },
        (error: unknown) => {
          failed(error);
          return false;
        },
      );
      void refreshing.finally(() => {
        refreshing = undefined;
      });
    }
    return refreshing ?? Promise.resolve(false);
  };
  const fromStale = async (stale: KeyResolver, header: JWSHeaderParameters, token: FlattenedJWSInput, failure: unknown) => {
    void refresh();
    let key: CryptoKey;
    try {
      key = await stale(header, token);
    } catch (error) {
      if (!(error instanceof joseErrors.JWKSNoMatchingKey)) throw error;
      // A kid the stale set lacks may be a key auth published since: only a fetch can tell.
      if ((await refresh()) || remote.fresh) return remote(header, token);
      throw outage?.error ?? failure;
    }
    if (logged === 'nothing') {
      logged = 'stale';
      logger?.warn(
        { jwksUrl: url.href, fetchedAt: new Date(staleSet?.uat ?? 0).toISOString(), err: failure },
        'JWKS cannot be fetched; verifying tokens against the last key set fetched',
      );
    }
    return key;
  };

  return async (header, token) => {
    if (outage && !remote.fresh) {
      const stale = staleKeys();
      if (stale) return fromStale(stale, header, token, outage.error);
    }
    try {
      const key = await remote(header, token);
      noteRecovery();
      return key;
    } catch (error) {
      if (!isKeySourceFailure(error)) throw error;
      failed(error);
      // While the set is fresh the failed fetch was for a kid it lacks, which the stale set lacks too.
      const stale = remote.fresh ? undefined : staleKeys();
      if (!stale) throw error;
      return fromStale(stale, header, token, error);
    }
  };
}

/**
 * A JWKS fetch presenting the client certificate in `files`, read again for every fetch (a few
 * per 10 minutes), each over its own connection: a renewed certificate is used at once.
 */
function tlsJwksFetch(files: ClientTlsFiles) {
  return async (url: string, init: { headers: Headers; method: 'GET'; redirect: 'manual'; signal: AbortSignal }) => {
    const dispatcher = new Agent({ connect: clientTlsOptions(files) ?? {} });
    try {
      const { signal, method, redirect } = init;
      const headers = Object.fromEntries(init.headers);
      return (await undiciFetch(url, { signal, method, redirect, headers, dispatcher })) as unknown as Response;
    } finally {
      // Graceful: the body jose reads next finishes first.
      void dispatcher.close();
    }
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
