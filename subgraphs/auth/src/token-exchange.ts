import type { Database } from '@ghostpay/db';
import { addressIdentity, type Logger, RateLimitedError, UnauthenticatedError } from '@ghostpay/platform';
import type { Counter } from 'prom-client';
import type { AccessToken, AccessTokenIssuer } from './access-tokens.ts';
import { apiKeyMatches, decoyHash, parseApiKey } from './api-key-format.ts';
import type { FailedExchangeLimiter } from './failed-exchange-limiter.ts';
import { findKeyForExchange, markApiKeyUsed } from './users.ts';

export interface TokenExchangeOptions {
  db: Database;
  tokens: AccessTokenIssuer;
  /** Failed exchanges per API key prefix. */
  byPrefix: FailedExchangeLimiter;
  /** Failed exchanges per client address (an IPv6 one by its /64: `addressIdentity`). */
  byAddress: FailedExchangeLimiter;
  logger: Logger;
  /** `auth_token_exchanges_total{outcome}`. */
  exchanges: Counter<'outcome'>;
}

/**
 * `createToken`: API key → access token. An unknown prefix, a wrong secret, a revoked key and
 * a malformed key all give the same UNAUTHENTICATED error, and the unknown-prefix path hashes
 * and compares against a decoy so it costs the same as a wrong secret.
 *
 * Failed-exchange limiting decides twice: before the lookup (an identity already over its
 * limit costs no query), and again when the outcome is known, because guesses sent at once all
 * pass the first check. A failure is told UNAUTHENTICATED only when it is counted within the
 * limit, and a success is issued only while neither identity is over it; everything else is
 * RATE_LIMITED. So however many guesses arrive together, at most the limit of them learn
 * anything, and a right secret is refused like a wrong one while the limit holds.
 */
export function createTokenExchange(options: TokenExchangeOptions) {
  const { db, tokens, byPrefix, byAddress, logger, exchanges } = options;
  const invalid = () => new UnauthenticatedError('Invalid API key');
  const limited = (retryAfter: number) => {
    exchanges.inc({ outcome: 'rate_limited' });
    return new RateLimitedError(retryAfter, 'Too many failed token requests; retry later');
  };

  /** `requestLogger`: the request's own (with its request id), so every line of one exchange can be told apart. */
  return async function exchange(apiKey: string, clientAddress: string, requestLogger: Logger = logger): Promise<AccessToken> {
    const parsed = parseApiKey(apiKey);
    const address = addressIdentity(clientAddress);
    const retryAfterNow = async () =>
      Math.max(...(await Promise.all([byAddress.retryAfterSeconds(address), parsed ? byPrefix.retryAfterSeconds(parsed.prefix) : 0])));
    const retryAfter = await retryAfterNow();
    if (retryAfter > 0) throw limited(retryAfter);
    const fail = async (reason: string) => {
      // Both identities count the failure (each while under its own limit); over either, the answer is RATE_LIMITED.
      const wait = Math.max(...(await Promise.all([byAddress.recordFailure(address), parsed ? byPrefix.recordFailure(parsed.prefix) : 0])));
      if (wait > 0) return limited(wait);
      exchanges.inc({ outcome: 'rejected' });
      // The prefix is not secret and lets an operator find the key; the secret is never logged.
      requestLogger.warn({ keyPrefix: parsed?.prefix, clientAddress, reason }, 'token exchange rejected');
      return invalid();
    };
    // A malformed key is rejected without a lookup: its shape is public, so timing reveals nothing.
    if (!parsed) throw await fail('malformed');
    const row = await findKeyForExchange(db, parsed.prefix);
    const secretMatches = apiKeyMatches(apiKey, row?.secretHash ?? decoyHash);
    if (!row || !secretMatches) throw await fail(row ? 'wrong secret' : 'unknown prefix');
    if (row.revokedAt) throw await fail('revoked');
    // Failures counted while this lookup ran may have reached the limit: then the right secret is refused too.
    const retryAfterMatch = await retryAfterNow();
    if (retryAfterMatch > 0) throw limited(retryAfterMatch);
    if (!(await markApiKeyUsed(db, row.id))) throw await fail('revoked');
    const issued = await tokens.issue({ userId: row.userId, role: row.role, apiKeyId: row.id });
    exchanges.inc({ outcome: 'issued' });
    // The audit trail of a credential's use: which key minted which token (its jti, never the token), from where.
    requestLogger.info(
      {
        userId: row.userId,
        role: row.role,
        apiKeyId: row.id,
        keyPrefix: parsed.prefix,
        tokenId: issued.tokenId,
        kid: issued.kid,
        expiresAt: new Date(issued.expiresAt * 1000).toISOString(),
        clientAddress,
      },
      'access token issued',
    );
    return issued.token;
  };
}

export type TokenExchange = ReturnType<typeof createTokenExchange>;
