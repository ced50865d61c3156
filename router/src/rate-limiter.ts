import { randomUUID } from 'node:crypto';
import { failFastRedisOptions, type Principal, throttledWarning } from '@ghostpay/platform';
import type { Redis, RedisOptions } from 'ioredis';
import type { Logger } from 'pino';

/** The outcome of one attempt to take `cost` requests from an identity's window. */
export interface RateLimitDecision {
  allowed: boolean;
  /** Requests allowed per window for this identity. */
  limit: number;
  /** Requests still available in the current window after this decision. */
  remaining: number;
  /** Seconds until the window has room again for one request (0 when there is room now). */
  resetSeconds: number;
  /** When refused: seconds after which the same request would be admitted. */
  retryAfterSeconds: number;
  windowSeconds: number;
}

export interface RateLimiter {
  consume(identity: string, limit: number, cost?: number): Promise<RateLimitDecision>;
  close(): Promise<void>;
}

/**
 * Whose budget a request takes from: a token's user (`user:<sub>`), whichever of their API keys
 * minted it, else the client address's anonymous one (`ip:<address identity>`). Per user, not
 * per key: a user may hold several keys (up to auth's MAX_API_KEYS_PER_USER made by themselves,
 * any number made by an admin) and revoke and re-create them, and each key counted apart would
 * be another full allowance. Each request is judged against the limit of the key it came with
 * (the key's own `rate_limit_per_minute`, else the default) over the user's shared window, so an
 * admin's per-key quota still holds for that key. Costs nothing: still one script call per
 * decision, the user id is in the token.
 */
export function rateLimitIdentity(principal: Pick<Principal, 'userId'> | undefined, clientIdentity: () => string): string {
  return principal ? `user:${principal.userId}` : `ip:${clientIdentity()}`;
}

/**
 * Sliding-window log: a request is admitted when fewer than `limit` requests were admitted
 * in the last `windowMs`. Exact (no boundary bursts, unlike fixed windows) at the price of one
 * timestamp per admitted request, which is small for per-minute API limits.
 */
export function createMemoryRateLimiter(options: { windowMs?: number; now?: () => number } = {}): RateLimiter {
  const windowMs = options.windowMs ?? 60_000;
  const now = options.now ?? (() => performance.timeOrigin + performance.now());
  const logs = new Map<string, number[]>();
  const sweep = setInterval(() => {
    const horizon = now() - windowMs;
    for (const [identity, log] of logs) if ((log.at(-1) ?? 0) <= horizon) logs.delete(identity);
  }, windowMs);
  sweep.unref();
  return {
    async consume(identity, limit, cost = 1) {
      const t = now();
      const log = logs.get(identity) ?? [];
      let expired = 0;
      while (expired < log.length && (log[expired] as number) <= t - windowMs) expired++;
      if (expired > 0) log.splice(0, expired);
      const allowed = log.length + cost <= limit;
      if (allowed) for (let i = 0; i < cost; i++) log.push(t);
      if (log.length > 0) logs.set(identity, log);
      const resetMs = log.length >= limit && log[0] !== undefined ? log[0] + windowMs - t : 0;
      const needIndex = log.length + cost - limit - 1;
      const retryMs = allowed ? 0 : cost > limit ? windowMs : (log[needIndex] ?? t) + windowMs - t;
      return {
        allowed,
        limit,
        remaining: Math.max(0, limit - log.length),
        resetSeconds: Math.ceil(resetMs / 1000),
        retryAfterSeconds: allowed ? 0 : Math.max(1, Math.ceil(retryMs / 1000)),
        windowSeconds: Math.ceil(windowMs / 1000),
      };
    },
    async close() {
      clearInterval(sweep);
      logs.clear();
    },
  };
}

/**
 * The same sliding-window log in one Lua script, so check-and-record is atomic across every
 * router replica, timed by the Redis server's clock (`TIME`) rather than the replicas'.
 * Returns {allowed, count, resetMicros, retryMicros}.
 */
const slidingWindowScript = `
local key = KEYS[1]
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local nonce = ARGV[4]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
local count = redis.call('ZCARD', key)
local allowed = 0
if count + cost <= limit then
  for i = 1, cost do redis.call('ZADD', key, now, nonce .. ':' .. i) end
  count = count + cost
  allowed = 1
  redis.call('PEXPIRE', key, math.ceil(window / 1000))
end
local reset = 0
if count >= limit then
  local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  if oldest[2] then reset = tonumber(oldest[2]) + window - now end
end
local retry = 0
if allowed == 0 then
  if cost > limit then
    retry = window
  else
    local needed = redis.call('ZRANGE', key, count + cost - limit - 1, count + cost - limit - 1, 'WITHSCORES')
    if needed[2] then retry = tonumber(needed[2]) + window - now end
  end
end
return {allowed, count, reset, retry}
`;

/**
 * Options for the router's Redis connection, which its rate limiter and subscription slots use
 * (`main.ts`, and the bench's stack, so it measures the same client):
 * - commands fail fast while Redis is unreachable (platform's `failFastRedisOptions`), so the
 *   limiter decides locally instead of queueing requests behind a dead store;
 * - auto-pipelining: the decisions asked for in one turn of the event loop, and those asked for
 *   while the previous batch is on the wire, go to Redis in one write and come back in one read.
 *   Each is still its own atomic script call, so counts stay exact; what it saves is a socket
 *   message each way per request, whose write cost the router about as much CPU as writing the
 *   answer to the client (bench/RESULTS.md, change 31: 5.0% against 6.1% of its samples;
 *   redis-server read+write calls per charge 1.6 → 0.8). The price: while Redis hangs,
 *   a batch waits for the one on the wire to time out before it is sent, so a decision can take
 *   twice `commandTimeoutMs` before the local limiter takes it.
 */
export function rateLimitRedisOptions(commandTimeoutMs: number): RedisOptions {
  return { ...failFastRedisOptions(commandTimeoutMs), enableAutoPipelining: true };
}

const slidingWindowCommand = 'ghostpaySlidingWindow';
type SlidingWindowCall = (key: string, limit: number, windowMicros: number, cost: number, nonce: string) => Promise<unknown>;

export interface RedisRateLimiterOptions {
  redis: Redis;
  logger: Logger;
  /** @default 60000 */
  windowMs?: number;
  /** Prefix of the Redis keys. @default 'ghostpay:rl:' */
  keyPrefix?: string;
  /** Called each time Redis cannot answer and the local limiter decides instead. */
  onFallback?: () => void;
}

/**
 * Redis-backed limiter that fails open to a local in-memory limit when Redis is unreachable:
 * a payment API keeps taking payments when its rate-limit store is down, but each replica
 * still refuses more than the limit per identity by itself (so N replicas admit at most N×).
 */
export function createRedisRateLimiter(options: RedisRateLimiterOptions): RateLimiter {
  const windowMs = options.windowMs ?? 60_000;
  const prefix = options.keyPrefix ?? 'ghostpay:rl:';
  const fallback = createMemoryRateLimiter({ windowMs });
  const { redis } = options;
  // ioredis sends a defined command as EVALSHA (the script's hash, not its text) and falls
  // back to EVAL once if the server does not have the script cached (NOSCRIPT, e.g. after
  // a Redis restart).
  if (!(slidingWindowCommand in redis)) redis.defineCommand(slidingWindowCommand, { numberOfKeys: 1, lua: slidingWindowScript });
  const slidingWindow = (redis as unknown as Record<typeof slidingWindowCommand, SlidingWindowCall>)[slidingWindowCommand].bind(redis);
  const warn = throttledWarning(options.logger);
  return {
    async consume(identity, limit, cost = 1) {
      try {
        const reply = (await slidingWindow(`${prefix}${identity}`, limit, windowMs * 1000, cost, randomUUID())) as [
          number,
          number,
          number,
          number,
        ];
        const [allowed, count, resetMicros, retryMicros] = reply.map(Number) as [number, number, number, number];
        return {
          allowed: allowed === 1,
          limit,
          remaining: Math.max(0, limit - count),
          resetSeconds: Math.ceil(resetMicros / 1e6),
          retryAfterSeconds: allowed === 1 ? 0 : Math.max(1, Math.ceil(retryMicros / 1e6)),
          windowSeconds: Math.ceil(windowMs / 1000),
        };
      } catch (error) {
        options.onFallback?.();
        warn(error, 'rate limit store unavailable: using the local in-memory limit');
        return fallback.consume(identity, limit, cost);
      }
    },
    async close() {
      await fallback.close();
    },
  };
}

/** IETF RateLimit fields (draft-ietf-httpapi-ratelimit-headers) plus Retry-After when refused. */
export function rateLimitHeaders(decision: RateLimitDecision, policy = 'default'): Record<string, string> {
  const headers: Record<string, string> = {
    'ratelimit-policy': `"${policy}";q=${decision.limit};w=${decision.windowSeconds}`,
    ratelimit: `"${policy}";r=${decision.remaining};t=${decision.resetSeconds}`,
  };
  if (!decision.allowed) headers['retry-after'] = String(decision.retryAfterSeconds);
  return headers;
}
