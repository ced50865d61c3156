import type { Database } from '@ghostpay/db';
import { type Logger, RateLimitedError, UnauthenticatedError } from '@ghostpay/platform';
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
  /** Failed exchanges per client address. */
  byAddress: FailedExchangeLimiter;
  logger: Logger;
  /** `auth_token_exchanges_total{outcome}`. */
  exchanges: Counter<'outcome'>;
}

/**
 * `createToken`: API key → access token. An unknown prefix, a wrong secret, a revoked key and
 * a malformed key all give the same UNAUTHENTICATED error, and the unknown-prefix path hashes
 * and compares against a decoy so it costs the same as a wrong secret.
 */
export function createTokenExchange(options: TokenExchangeOptions) {
  const { db, tokens, byPrefix, byAddress, logger, exchanges } = options;
  const invalid = () => new UnauthenticatedError('Invalid API key');

  return async function exchange(apiKey: string, clientAddress: string): Promise<AccessToken> {
    const parsed = parseApiKey(apiKey);
    const retryAfter = Math.max(byAddress.retryAfterSeconds(clientAddress), parsed ? byPrefix.retryAfterSeconds(parsed.prefix) : 0);
    if (retryAfter > 0) {
      exchanges.inc({ outcome: 'rate_limited' });
      throw new RateLimitedError(retryAfter, 'Too many failed token requests; retry later');
    }
    const fail = (reason: string) => {
      byAddress.recordFailure(clientAddress);
      if (parsed) byPrefix.recordFailure(parsed.prefix);
      exchanges.inc({ outcome: 'rejected' });
      // The prefix is not secret and lets an operator find the key; the secret is never logged.
      logger.warn({ keyPrefix: parsed?.prefix, clientAddress, reason }, 'token exchange rejected');
      return invalid();
    };
    // A malformed key is rejected without a lookup: its shape is public, so timing reveals nothing.
    if (!parsed) throw fail('malformed');
    const row = await findKeyForExchange(db, parsed.prefix);
    const secretMatches = apiKeyMatches(apiKey, row?.secretHash ?? decoyHash);
    if (!row || !secretMatches) throw fail(row ? 'wrong secret' : 'unknown prefix');
    if (row.revokedAt) throw fail('revoked');
    if (!(await markApiKeyUsed(db, row.id))) throw fail('revoked');
    const token = await tokens.issue({ userId: row.userId, role: row.role, apiKeyId: row.id });
    exchanges.inc({ outcome: 'issued' });
    return token;
  };
}

export type TokenExchange = ReturnType<typeof createTokenExchange>;
