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
  /** Failed exchanges per client address (an IPv6 one by its /64: `addressIdentity`). */
  byAddress: FailedExchangeLimiter;
  /** Failed exchanges per API key prefix from one client address (identity `<prefix>@<address>`). */
  byKeyFromAddress: FailedExchangeLimiter;
  /** Failed exchanges per API key prefix from every address: reaching its limit puts the key under attack. */
  byKey: FailedExchangeLimiter;
  logger: Logger;
  /** `auth_token_exchanges_total{outcome}`. */
  exchanges: Counter<'outcome'>;
}

/**
 * Failures a client address may make on a key under attack (its failures from every address
 * have reached `byKey`'s limit) within the window: one, where it may otherwise make `byKeyFromAddress`'s.
 */
const underAttackBudget = 1;

/**
 * `createToken`: API key → access token. An unknown prefix, a wrong secret, a revoked key and
 * a malformed key all give the same UNAUTHENTICATED error, and the unknown-prefix path hashes
 * and compares against a decoy so it costs the same as a wrong secret.
 *
 * Failed attempts are limited per client address, and per key from one client address: a key
 * prefix is public, so failures from one address must never lock the key's owner out when they
 * present the right secret from another. A client over either limit is answered RATE_LIMITED
 * whatever it sends, the right secret included, so the limit is no oracle for it. The key's
 * failures from every address only slow guessing spread over many addresses: once they reach
 * `byKey`'s limit, each address may fail on that key once per window (`underAttackBudget`), and
 * an address that has not failed on it still gets its one attempt, which is how the owner keeps
 * minting. Per window an attacker holding A address identities tests at most `byKey`'s limit + A
 * secrets of one key (and 20 A in all, per address), against ~256 bits (`api-key-format.ts`).
 *
 * Limiting decides twice: before the lookup (a client already over its limit costs no query),
 * and again when the outcome is known, because guesses sent at once all pass the first check. A
 * failure is told UNAUTHENTICATED only when it is counted within the limits, and a success is
 * issued only while the client is not over them; everything else is RATE_LIMITED. So however
 * many guesses arrive together, at most the limits' worth learn anything.
 */
export function createTokenExchange(options: TokenExchangeOptions) {
  const { db, tokens, byAddress, byKeyFromAddress, byKey, logger, exchanges } = options;
  const invalid = () => new UnauthenticatedError('Invalid API key');
  const limited = (retryAfter: number) => {
    exchanges.inc({ outcome: 'rate_limited' });
    return new RateLimitedError(retryAfter, 'Too many failed token requests; retry later');
  };

  /** `requestLogger`: the request's own (with its request id), so every line of one exchange can be told apart. */
  return async function exchange(apiKey: string, clientAddress: string, requestLogger: Logger = logger): Promise<AccessToken> {
    const parsed = parseApiKey(apiKey);
    const address = addressIdentity(clientAddress);
    const keyFromAddress = parsed && `${parsed.prefix}@${address}`;
    /** Seconds this client must wait before trying this key, 0 when it may try now: all checks at once, one round trip to Redis. */
    const retryAfterNow = async () => {
      const [forAddress, forKeyFromAddress, keyUnderAttack, forKeyUnderAttack] = await Promise.all([
        byAddress.retryAfterSeconds(address),
        keyFromAddress ? byKeyFromAddress.retryAfterSeconds(keyFromAddress) : 0,
        parsed ? byKey.retryAfterSeconds(parsed.prefix) : 0,
        keyFromAddress ? byKeyFromAddress.retryAfterSeconds(keyFromAddress, underAttackBudget) : 0,
      ]);
      return Math.max(forAddress, forKeyFromAddress, keyUnderAttack > 0 ? forKeyUnderAttack : 0);
    };
    const retryAfter = await retryAfterNow();
    if (retryAfter > 0) throw limited(retryAfter);
    const fail = async (reason: string) => {
      // The key's failures from every address first: when they had reached the limit (the count
      // refused), the key is under attack and this address's budget for it is one failure.
      const underAttack = parsed ? (await byKey.recordFailure(parsed.prefix)) > 0 : false;
      // Each identity counts the failure while under its own limit; over either, the answer is RATE_LIMITED.
      const wait = Math.max(
        ...(await Promise.all([
          byAddress.recordFailure(address),
          keyFromAddress ? byKeyFromAddress.recordFailure(keyFromAddress, underAttack ? underAttackBudget : undefined) : 0,
        ])),
      );
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
    // This client's failures counted while the lookup ran may have reached a limit: then the right secret is refused too.
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
