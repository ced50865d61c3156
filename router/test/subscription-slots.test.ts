/**
 * The per-API-key subscription limit shared by router replicas through Redis (real redis-server):
 * leases counted across replicas, exact under a race, freed on release, renewed while held, and
 * expired when their replica dies; and this process's own count while Redis is unreachable.
 */
import { once } from 'node:events';
import { createLogger } from '@ghostpay/platform';
import { redisUrl } from '@ghostpay/test-support';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rateLimitRedisOptions } from '../src/rate-limiter.ts';
import {
  createLocalSubscriptionSlots,
  createRedisSubscriptionSlots,
  type Reservation,
  type SubscriptionSlots,
} from '../src/subscriptions/subscription-slots.ts';

const logger = createLogger({ service: 'subscription-slots-test', level: 'silent' });
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('local subscription slots', () => {
  it('admits `limit` per key in one process, and one more once a slot is released', async () => {
    const slots = createLocalSubscriptionSlots();
    const held = await Promise.all([1, 2, 3].map(() => slots.acquire('key_a', 2)));
    expect(held.filter(Boolean)).toHaveLength(2);
    expect(await slots.acquire('key_b', 2)).toBeDefined();
    expect(slots.held()).toBe(3);
    held[0]?.release();
    held[0]?.release();
    expect(slots.held()).toBe(2);
    expect(await slots.acquire('key_a', 2)).toBeDefined();
    expect(await slots.acquire('key_a', 2)).toBeUndefined();
  });
});

describe.skipIf(!redisUrl())('subscription slots shared through Redis', () => {
  const clients: Redis[] = [];
  const replicas: SubscriptionSlots[] = [];
  let run = 0;

  /** A router replica's slots on its own Redis client, as main.ts makes it. */
  const replica = async (options: { leaseMs?: number; onFallback?: () => void } = {}) => {
    const redis = new Redis(redisUrl(), rateLimitRedisOptions(1_000));
    await once(redis, 'ready');
    clients.push(redis);
    const slots = createRedisSubscriptionSlots({ redis, logger, keyPrefix: `test:subs:${process.pid}:${run}:`, ...options });
    replicas.push(slots);
    return slots;
  };
  beforeAll(() => {
    run = Date.now();
  });
  afterAll(async () => {
    for (const slots of replicas) await slots.close();
    for (const redis of clients) redis.disconnect();
  });

  it('counts a key across replicas: the limit holds whichever replica a subscription lands on', async () => {
    const [a, b] = [await replica(), await replica()];
    expect(await a.acquire('key_shared', 3)).toBeDefined();
    expect(await b.acquire('key_shared', 3)).toBeDefined();
    const third = await a.acquire('key_shared', 3);
    expect(third).toBeDefined();
    // Local counting (one process each) would admit these: each replica holds fewer than 3.
    expect(await b.acquire('key_shared', 3)).toBeUndefined();
    expect(await a.acquire('key_shared', 3)).toBeUndefined();
    // Another key has its own slots.
    expect(await b.acquire('key_other', 3)).toBeDefined();
    // A released slot is free to the other replica.
    third?.release();
    await sleep(50);
    expect(await b.acquire('key_shared', 3)).toBeDefined();
    expect(await a.acquire('key_shared', 3)).toBeUndefined();
    expect(a.held() + b.held()).toBe(4);
  });

  it('admits exactly the limit when replicas race for the last slots', async () => {
    const [a, b, c] = [await replica(), await replica(), await replica()];
    const attempts = Array.from({ length: 60 }, (_, i) => [a, b, c][i % 3]!.acquire('key_race', 7));
    const granted = (await Promise.all(attempts)).filter((r): r is Reservation => r !== undefined);
    expect(granted).toHaveLength(7);
    for (const r of granted) r.release();
  });

  it('keeps leases alive while held, and frees a dead replica’s slots after one lease', async () => {
    const holder = await replica({ leaseMs: 400 });
    const other = await replica({ leaseMs: 400 });
    expect(await holder.acquire('key_lease', 2)).toBeDefined();
    expect(await holder.acquire('key_lease', 2)).toBeDefined();
    // Renewed every third of a lease: after three leases' time they still hold.
    await sleep(1_200);
    expect(await other.acquire('key_lease', 2)).toBeUndefined();
    // The holder dies without releasing (no renewal any more): its leases run out.
    await holder.close();
    await sleep(600);
    expect(await other.acquire('key_lease', 2)).toBeDefined();
  });

  it('counts in this process while Redis is unreachable (fail open), and says so', async () => {
    // A port nothing listens on: commands fail at once (no offline queue).
    const redis = new Redis('redis://127.0.0.1:9/0', { ...rateLimitRedisOptions(200), lazyConnect: true, retryStrategy: () => null });
    redis.on('error', () => {});
    clients.push(redis);
    let fallbacks = 0;
    const slots = createRedisSubscriptionSlots({ redis, logger, onFallback: () => fallbacks++ });
    replicas.push(slots);
    const held = await Promise.all([1, 2, 3].map(() => slots.acquire('key_down', 2)));
    expect(held.filter(Boolean)).toHaveLength(2);
    expect(fallbacks).toBe(3);
    expect(slots.held()).toBe(2);
    held[0]?.release();
    expect(slots.held()).toBe(1);
    expect(await slots.acquire('key_down', 2)).toBeDefined();
  });
});
