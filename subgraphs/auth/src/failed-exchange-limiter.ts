import { createHash, randomUUID } from 'node:crypto';
import { failFastRedisOptions, type Logger, throttledWarning } from '@ghostpay/platform';
import type { Redis, RedisOptions } from 'ioredis';

export interface FailedExchangeLimiterOptions {
  /** Failures allowed per identity within the window, unless a call names a lower one. */
  limit: number;
  windowMs: number;
  /** Identities tracked at most; the least recently failed are forgotten first. @default 10000 */
  maxTracked?: number;
  now?: () => number;
}

/**
 * An in-memory sliding-window counter of failed token exchanges per identity (a client
 * address, an API key prefix from one address, or an API key prefix). Only failures count; a success does not reset the window, so
 * an attacker cannot interleave a valid key to keep guessing. The map is bounded so random
 * identities cannot exhaust memory. Per process: with N replicas an attacker gets N× the
 * budget, which is why replicas share `createRedisFailedExchangeLimiter` when REDIS_URL is set;
 * this one is the embedded default and Redis's fallback.
 *
 * `recordFailure` both counts and decides: guesses sent at once all pass a check made before
 * their lookups, so the answer to a failed guess is settled when its failure is counted. Only
 * the first `limit` failures in a window are counted and may be told UNAUTHENTICATED; the rest
 * answer RATE_LIMITED like any attempt over the limit.
 */
export function createFailedExchangeLimiter(options: FailedExchangeLimiterOptions): {
  retryAfterSeconds(identity: string, limit?: number): number;
  recordFailure(identity: string, limit?: number): number;
} {
  const { windowMs, maxTracked = 10_000, now = Date.now } = options;
  // Map iteration order is insertion order: re-inserting on each failure keeps it LRU.
  const failures = new Map<string, number[]>();

  const recent = (identity: string, at: number): number[] => {
    const list = failures.get(identity);
    if (!list) return [];
    const kept = list.filter((time) => time > at - windowMs);
    if (kept.length === 0) failures.delete(identity);
    else if (kept.length !== list.length) failures.set(identity, kept);
    return kept;
  };
  /** Seconds until the oldest failure that keeps `list` at the limit leaves the window, or 0 below the limit. */
  const waitFor = (list: number[], at: number, limit: number): number => {
    if (list.length < limit) return 0;
    const oldestInWindow = list[list.length - limit]!;
    return Math.max(1, Math.ceil((oldestInWindow + windowMs - at) / 1000));
  };

  return {
    /** Seconds until another attempt is allowed, or 0 when the identity may try now. */
    retryAfterSeconds(identity: string, limit = options.limit): number {
      const at = now();
      return waitFor(recent(identity, at), at, limit);
    },
    /**
     * Counts a failure when the identity is under its limit and returns 0: the caller may answer
     * UNAUTHENTICATED. At the limit nothing is counted and the seconds to wait are returned: the
     * caller must answer RATE_LIMITED, whatever the attempt was.
     */
    recordFailure(identity: string, limit = options.limit): number {
      const at = now();
      const list = recent(identity, at);
      const wait = waitFor(list, at, limit);
      if (wait > 0) return wait;
      failures.delete(identity);
      failures.set(identity, [...list, at]);
      while (failures.size > maxTracked) {
        const oldest = failures.keys().next().value;
        if (oldest === undefined) break;
        failures.delete(oldest);
      }
      return 0;
    },
  };
}

/**
 * What the token exchange asks of a limiter, in memory or in Redis. Both answers are seconds
 * to wait, 0 meaning go ahead (see `createFailedExchangeLimiter` for what each decides).
 * `limit`, when given, replaces the limiter's own for that call (token exchange lowers a
 * client's budget for a key under attack: see `createTokenExchange`).
 */
export interface FailedExchangeLimiter {
  retryAfterSeconds(identity: string, limit?: number): number | Promise<number>;
  recordFailure(identity: string, limit?: number): number | Promise<number>;
}

/**
 * Both operations as Lua scripts, so each is atomic across every replica, timed by the Redis
 * server's clock (`TIME`, microseconds) rather than the replicas'. A sorted set per identity
 * holds the failures in the window (score = time), at most `limit` of them; it expires with
 * the window. Each returns the microseconds to wait, 0 meaning go ahead.
 */
const windowPreamble = `
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
local function wait()
  if count < limit then return 0 end
  local oldest = redis.call('ZRANGE', KEYS[1], count - limit, count - limit, 'WITHSCORES')
  return math.max(1, tonumber(oldest[2]) + window - now)
end
`;
const checkScript = `${windowPreamble}
return wait()
`;
const recordScript = `${windowPreamble}
local waiting = wait()
if waiting > 0 then return waiting end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000))
return 0
`;

const checkCommand = 'ghostpayFailedExchangeCheck';
const recordCommand = 'ghostpayFailedExchangeRecord';
type ScriptCall = (key: string, limit: number, windowMicros: number, member?: string) => Promise<unknown>;

/**
 * Options for auth's Redis connection, which only these limiters use: commands fail fast while
 * Redis is unreachable (platform's `failFastRedisOptions`), so an exchange falls back to the
 * local limit instead of waiting behind a dead store; `start()` connects it.
 */
export function failedExchangeRedisOptions(commandTimeoutMs = 500): RedisOptions {
  return { ...failFastRedisOptions(commandTimeoutMs), lazyConnect: true };
}

export interface RedisFailedExchangeLimiterOptions {
  redis: Redis;
  /** Failures allowed per identity within the window, unless a call names a lower one. */
  limit: number;
  windowMs: number;
  /** Names this limiter's identities apart from another's on the same Redis (`prefix`, `address`). */
  name: string;
  logger: Pick<Logger, 'warn'>;
  /** @default 'ghostpay:auth:failed-exchange:' */
  keyPrefix?: string;
  /** Decides while Redis cannot answer. @default an in-memory limiter with the same limit and window */
  fallback?: FailedExchangeLimiter;
}

/**
 * The failed-exchange limiter shared by every replica through Redis, so N replicas give an
 * attacker the budget of one. While Redis cannot answer, each replica falls back to its own
 * in-memory limit (one warning per 10 s): token exchange keeps working, limited per replica as
 * without Redis, rather than failing closed for everyone.
 */
export function createRedisFailedExchangeLimiter(options: RedisFailedExchangeLimiterOptions): FailedExchangeLimiter {
  const { redis, windowMs, logger } = options;
  const keyPrefix = `${options.keyPrefix ?? 'ghostpay:auth:failed-exchange:'}${options.name}:`;
  const fallback = options.fallback ?? createFailedExchangeLimiter({ limit: options.limit, windowMs });
  // ioredis sends a defined command as EVALSHA, falling back to EVAL once after a NOSCRIPT.
  if (!(checkCommand in redis)) redis.defineCommand(checkCommand, { numberOfKeys: 1, lua: checkScript });
  if (!(recordCommand in redis)) redis.defineCommand(recordCommand, { numberOfKeys: 1, lua: recordScript });
  const commands = redis as unknown as Record<typeof checkCommand | typeof recordCommand, ScriptCall>;
  // An address comes from a header: keep keys short whatever it holds.
  const keyOf = (identity: string) =>
    `${keyPrefix}${identity.length <= 64 ? identity : `sha256:${createHash('sha256').update(identity).digest('hex')}`}`;
  const seconds = (reply: unknown) => {
    const micros = Number(reply);
    return micros > 0 ? Math.max(1, Math.ceil(micros / 1e6)) : 0;
  };
  const warn = throttledWarning(logger);
  const orLocally = (error: unknown, local: () => number | Promise<number>) => {
    warn(error, 'failed-exchange limit store unavailable: limiting in this process until it answers');
    return local();
  };
  return {
    async retryAfterSeconds(identity, limit = options.limit) {
      try {
        return seconds(await commands[checkCommand].call(redis, keyOf(identity), limit, windowMs * 1000));
      } catch (error) {
        return orLocally(error, () => fallback.retryAfterSeconds(identity, limit));
      }
    },
    async recordFailure(identity, limit = options.limit) {
      try {
        return seconds(await commands[recordCommand].call(redis, keyOf(identity), limit, windowMs * 1000, randomUUID()));
      } catch (error) {
        return orLocally(error, () => fallback.recordFailure(identity, limit));
      }
    },
  };
}
