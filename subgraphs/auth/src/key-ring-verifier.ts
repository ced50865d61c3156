import { createJwtVerifier, type JwtVerifier, UnauthenticatedError } from '@ghostpay/platform';
import type { SigningKeyRing } from './signing-key-ring.ts';

export interface KeyRingVerifierOptions {
  issuer: string;
  audience: string;
  clockToleranceSeconds: number;
  /** How long the published key set is reused before it is read again. @default 5000 */
  refreshMs?: number;
}

/**
 * The auth service verifies its callers' tokens against its own published key set, read
 * from the database rather than fetched over HTTP from itself (it may listen on port 0).
 * It is still platform's verifier, with the same algorithm allowlist and claim checks;
 * an unknown `kid` forces one re-read, since another replica may just have rotated.
 */
export function createKeyRingVerifier(keyRing: SigningKeyRing, options: KeyRingVerifierOptions): JwtVerifier {
  const refreshMs = options.refreshMs ?? 5_000;
  let cached: { at: number; verifier: Promise<JwtVerifier> } | undefined;
  const load = (force: boolean) => {
    if (!force && cached && Date.now() - cached.at < refreshMs) return cached.verifier;
    const verifier = keyRing.publishedJwks().then((jwks) =>
      createJwtVerifier({
        jwks,
        issuer: options.issuer,
        audience: options.audience,
        clockToleranceSeconds: options.clockToleranceSeconds,
      }),
    );
    verifier.catch(() => (cached = undefined));
    cached = { at: Date.now(), verifier };
    return verifier;
  };
  const verify = async (token: string) => {
    try {
      return await (await load(false)).verify(token);
    } catch (error) {
      const stale = cached && Date.now() - cached.at > 1_000;
      if (error instanceof UnauthenticatedError && /key is unknown/.test(error.message) && stale) return (await load(true)).verify(token);
      throw error;
    }
  };
  return {
    verify,
    async verifyAuthorization(header) {
      if (!header) return undefined;
      const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
      if (!match?.[1]) throw new UnauthenticatedError('Authorization header must be "Bearer <token>"');
      return verify(match[1]);
    },
  };
}
