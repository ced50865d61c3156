import { randomUUID } from 'node:crypto';
import { throttledWarning } from '@ghostpay/platform';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';

/** One subscription's hold on a slot of its user (the gateway's `limitedAs`). */
export interface Reservation {
  /** Gives the slot back; later calls do nothing. */
  release(): void;
}

/**
 * The per-user subscription limit (`ROUTER_SUBSCRIPTION_MAX_PER_API_KEY`, a name older than per
 * user): which subscriptions hold one of a user's slots, in this process or, with Redis, across
 * every router replica. The slots are keyed by whatever string the gateway passes (`user:<sub>`).
 */
export interface SubscriptionSlots {
  /** One of `limit` slots of the key, or undefined when every one is held. */
  acquire(apiKeyId: string, limit: number): Promise<Reservation | undefined>;
  /** Slots this process holds. */
  held(): number;
  close(): Promise<void>;
}

/**
 * Places counted per key in this process, at most `limit` per key: the per-API-key slots below,
 * and the gateway's WebSockets per API key and unauthenticated WebSockets per client address.
 */
export interface KeyedPlaces {
  /** One of `limit` places of `key`: the function that gives it back (later calls do nothing), or undefined when every one is held. */
  take(key: string, limit: number): (() => void) | undefined;
  /** Places taken and not given back, over every key. */
  held(): number;
  /** Forgets every key's count (each key starts from none); places not given back stay in `held`. */
  clear(): void;
}

export function createKeyedPlaces(): KeyedPlaces {
  const perKey = new Map<string, number>();
  let total = 0;
  return {
    take(key, limit) {
      const count = perKey.get(key) ?? 0;
      if (count >= limit) return undefined;
      perKey.set(key, count + 1);
      total++;
      let given = false;
      return () => {
        if (given) return;
        given = true;
        total--;
        const left = (perKey.get(key) ?? 1) - 1;
        if (left <= 0) perKey.delete(key);
        else perKey.set(key, left);
      };
    },
    held: () => total,
    clear: () => perKey.clear(),
  };
}

/** Slots counted in this process only: N router replicas admit up to N × the limit per key. */
export function createLocalSubscriptionSlots(): SubscriptionSlots {
  const places = createKeyedPlaces();
  return {
    async acquire(apiKeyId, limit) {
      const release = places.take(apiKeyId, limit);
      return release && { release };
    },
    held: () => places.held(),
    async close() {
      places.clear();
    },
  };
}

// A key's slots are a sorted set of leases: member = one subscription, score = when its lease
// ends (Redis TIME, microseconds). Expired leases (a replica that died holding them) are
// swept before counting, so a crash frees its slots after one lease at most.
const acquireScript = `
local key = KEYS[1]
local limit = tonumber(ARGV[1])
local lease = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
if redis.call('ZCARD', key) >= limit then return 0 end
redis.call('ZADD', key, now + lease, ARGV[3])
redis.call('PEXPIRE', key, math.ceil(lease / 1000))
return 1
`;
// Every lease this replica holds on a key, extended. Members are added back if they were swept
// (the subscription is still open, so it still holds a slot, even past the limit).
const renewScript = `
local key = KEYS[1]
local lease = tonumber(ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
for i = 2, #ARGV do redis.call('ZADD', key, now + lease, ARGV[i]) end
redis.call('PEXPIRE', key, math.ceil(lease / 1000))
return 1
`;
const acquireCommand = 'ghostpaySubscriptionAcquire';
const renewCommand = 'ghostpaySubscriptionRenew';
type ScriptCall = (key: string, ...args: (string | number)[]) => Promise<unknown>;

export interface RedisSubscriptionSlotsOptions {
  /** The router's Redis client (`rateLimitRedisOptions`: commands fail fast while it is down). */
  redis: Redis;
  logger: Logger;
  /** How long a lease lasts without renewal: the longest a dead replica's slots stay taken. @default 60000 */
  leaseMs?: number;
  /** Prefix of the Redis keys. @default 'ghostpay:subs:' */
  keyPrefix?: string;
  /** Called each time Redis cannot answer and this process's own count decides instead. */
  onFallback?: () => void;
}

/**
 * Slots shared by every router replica on one Redis: a key's limit holds across replicas. Each
 * subscription holds a lease, renewed every third of `leaseMs` while it is open and removed
 * when it ends. When Redis cannot answer an acquire, this process's own count decides (fail
 * open, as the HTTP rate limiter does: subscriptions keep working, each replica still refuses
 * more than the limit by itself).
 */
export function createRedisSubscriptionSlots(options: RedisSubscriptionSlotsOptions): SubscriptionSlots {
  const { redis, logger } = options;
  const leaseMs = options.leaseMs ?? 60_000;
  const prefix = options.keyPrefix ?? 'ghostpay:subs:';
  const local = createLocalSubscriptionSlots();
  for (const [name, lua] of [
    [acquireCommand, acquireScript],
    [renewCommand, renewScript],
  ] as const) {
    if (!(name in redis)) redis.defineCommand(name, { numberOfKeys: 1, lua });
  }
  const call = (name: string) => (redis as unknown as Record<string, ScriptCall>)[name]!.bind(redis);
  const acquireLease = call(acquireCommand);
  const renewLeases = call(renewCommand);
  /** This replica's leases by Redis key. */
  const leases = new Map<string, Set<string>>();
  const warn = throttledWarning(logger);

  const renewal = setInterval(
    () => {
      for (const [key, members] of leases) {
        if (members.size === 0) continue;
        renewLeases(key, leaseMs * 1000, ...members).catch((error: unknown) =>
          warn(error, 'subscription slots: renewing leases failed; they expire unless the next renewal succeeds'),
        );
      }
    },
    Math.max(1, Math.floor(leaseMs / 3)),
  );
  renewal.unref();

  return {
    async acquire(apiKeyId, limit) {
      const key = `${prefix}${apiKeyId}`;
      const member = randomUUID();
      let granted: boolean;
      try {
        granted = Number(await acquireLease(key, limit, leaseMs * 1000, member)) === 1;
      } catch (error) {
        options.onFallback?.();
        warn(error, 'subscription slots: Redis unavailable, counting this process only');
        return local.acquire(apiKeyId, limit);
      }
      if (!granted) return undefined;
      const members = leases.get(key) ?? new Set<string>();
      members.add(member);
      leases.set(key, members);
      let released = false;
      return {
        release() {
          if (released) return;
          released = true;
          // Dropped here first, so no renewal sent from now on names it again.
          members.delete(member);
          if (members.size === 0 && leases.get(key) === members) leases.delete(key);
          // If Redis cannot take it, the lease expires by itself within leaseMs.
          redis.zrem(key, member).catch((error: unknown) => warn(error, 'subscription slots: releasing a lease failed'));
        },
      };
    },
    held() {
      let total = local.held();
      for (const members of leases.values()) total += members.size;
      return total;
    },
    async close() {
      clearInterval(renewal);
      await local.close();
    },
  };
}
