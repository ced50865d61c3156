import { randomUUID } from 'node:crypto';
import { createLogger } from '@ghostpay/platform';
import { findRedisServer, redisUrl, startRedisServer } from '@ghostpay/test-support';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createFailedExchangeLimiter,
  createRedisFailedExchangeLimiter,
  type FailedExchangeLimiter,
  failedExchangeRedisOptions,
} from '../src/failed-exchange-limiter.ts';
import { type AuthHarness, type GraphQLResult, startAuth } from './auth-harness.ts';

const createToken = 'mutation ($apiKey: String!) { createToken(apiKey: $apiKey) { accessToken } }';

async function createTokenAt(url: string, apiKey: string, address: string): Promise<GraphQLResult> {
  const response = await fetch(`${url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-forwarded-for': address },
    body: JSON.stringify({ query: createToken, variables: { apiKey } }),
  });
  return (await response.json()) as GraphQLResult;
}

describe.skipIf(!redisUrl())('failed-exchange limits shared by replicas through Redis (REDIS_URL)', () => {
  let auth: AuthHarness;
  let replicaUrl: string;
  beforeAll(async () => {
    auth = await startAuth({
      env: {
        REDIS_URL: redisUrl(),
        FAILED_EXCHANGE_LIMIT_PER_KEY: '3',
        FAILED_EXCHANGE_LIMIT_PER_KEY_ALL_ADDRESSES: '4',
        FAILED_EXCHANGE_LIMIT_PER_ADDRESS: '6',
        TRUSTED_PROXY_HOPS: '1',
      },
    });
    replicaUrl = (await auth.replica()).url;
  });
  afterAll(() => auth?.close());

  it('shares the key-wide limit: guesses for one prefix spread over addresses and replicas put it under attack on both', async () => {
    const target = await auth.seed('merchant');
    const prefix = target.apiKey.split('_')[1]!;
    const guess = `gp_${prefix}_${'F'.repeat(43)}`;
    const codes: unknown[] = [];
    // One failure from each of four addresses, alternating replicas: the key-wide 4, which neither replica reaches alone.
    for (let n = 1; n <= 4; n++)
      codes.push((await createTokenAt(n % 2 ? replicaUrl : auth.url, guess, `198.51.100.${n}`)).errors?.[0]?.extensions?.code);
    expect(codes).toEqual(Array(4).fill('UNAUTHENTICATED'));
    // Under attack, on either replica, an address that failed on the key has used its one failure.
    for (const url of [auth.url, replicaUrl]) {
      expect((await createTokenAt(url, guess, '198.51.100.1')).errors?.[0]?.extensions?.code).toBe('RATE_LIMITED');
      expect((await createTokenAt(url, target.apiKey, '198.51.100.2')).errors?.[0]?.extensions?.code).toBe('RATE_LIMITED');
    }
    // A new address gets one failure in all, whichever replica it asks.
    expect((await createTokenAt(auth.url, guess, '198.51.100.5')).errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
    expect((await createTokenAt(replicaUrl, guess, '198.51.100.5')).errors?.[0]?.extensions?.code).toBe('RATE_LIMITED');
    // The owner, from an address of theirs, mints on either replica.
    for (const url of [auth.url, replicaUrl]) expect((await createTokenAt(url, target.apiKey, '203.0.113.50')).errors).toBeUndefined();
  });

  it('shares the per-key budget of one address', async () => {
    const target = await auth.seed('merchant');
    const prefix = target.apiKey.split('_')[1]!;
    const codes: unknown[] = [];
    for (let attempt = 0; attempt < 6; attempt++) {
      const result = await createTokenAt(attempt % 2 ? replicaUrl : auth.url, `gp_${prefix}_${'K'.repeat(43)}`, '198.51.100.80');
      codes.push(result.errors?.[0]?.extensions?.code);
    }
    expect(codes).toEqual([...Array(3).fill('UNAUTHENTICATED'), ...Array(3).fill('RATE_LIMITED')]);
    expect((await createTokenAt(auth.url, target.apiKey, '198.51.100.80')).errors?.[0]?.extensions?.code).toBe('RATE_LIMITED');
  });

  it('shares the per-address budget too', async () => {
    const user = await auth.seed('user');
    const codes: unknown[] = [];
    for (let attempt = 0; attempt < 10; attempt++) {
      const guess = `gp_${String(attempt).padStart(12, 'y')}_${'G'.repeat(43)}`;
      codes.push((await createTokenAt(attempt % 2 ? replicaUrl : auth.url, guess, '203.0.113.77')).errors?.[0]?.extensions?.code);
    }
    expect(codes).toEqual([...Array(6).fill('UNAUTHENTICATED'), ...Array(4).fill('RATE_LIMITED')]);
    expect((await createTokenAt(replicaUrl, user.apiKey, '203.0.113.77')).errors?.[0]?.extensions?.code).toBe('RATE_LIMITED');
    const elsewhere = await createTokenAt(replicaUrl, user.apiKey, '203.0.113.78');
    expect(elsewhere.errors).toBeUndefined();
  });
});

const logger = createLogger({ service: 'auth', level: 'silent' });

/** Records `attempts` failures for one identity, alternating between the limiters; how many were counted (answered 0). */
async function countedAcross(limiters: FailedExchangeLimiter[], identity: string, attempts: number): Promise<number> {
  let counted = 0;
  for (let n = 0; n < attempts; n++) if ((await limiters[n % limiters.length]!.recordFailure(identity)) === 0) counted++;
  return counted;
}

describe.skipIf(!redisUrl())('the Redis failed-exchange limiter', () => {
  const clients: Redis[] = [];
  const connect = async (url = redisUrl()) => {
    const client = new Redis(url, failedExchangeRedisOptions());
    clients.push(client);
    client.on('error', () => {});
    await client.connect().catch(() => {});
    return client;
  };
  afterAll(() => {
    for (const client of clients) client.disconnect();
  });
  const pair = async (limit: number, windowMs = 60_000) => {
    const name = randomUUID();
    return [
      createRedisFailedExchangeLimiter({ redis: await connect(), name, limit, windowMs, logger }),
      createRedisFailedExchangeLimiter({ redis: await connect(), name, limit, windowMs, logger }),
    ];
  };

  it('gives two instances, as on two replicas, one budget; two in-memory ones each have their own', async () => {
    expect(await countedAcross(await pair(3), 'prefix-a', 10)).toBe(3);
    const inMemory = [
      createFailedExchangeLimiter({ limit: 3, windowMs: 60_000 }),
      createFailedExchangeLimiter({ limit: 3, windowMs: 60_000 }),
    ];
    // The same attempts against per-process limiters: the budget doubles, which is what Redis is for.
    expect(await countedAcross(inMemory, 'prefix-a', 10)).toBe(6);
  });

  it('counts exactly the limit when failures arrive at once on both instances, and says how long to wait', async () => {
    const limiters = await pair(4, 120_000);
    const answers = await Promise.all(Array.from({ length: 30 }, (_, n) => limiters[n % 2]!.recordFailure('address-b')));
    expect(answers.filter((wait) => wait === 0)).toHaveLength(4);
    for (const wait of answers.filter((w) => w > 0)) expect(wait).toBeGreaterThan(110);
    for (const limiter of limiters) {
      expect(await limiter.retryAfterSeconds('address-b')).toBeGreaterThan(110);
      expect(await limiter.retryAfterSeconds('address-c')).toBe(0);
    }
  });

  it('lets failures leave the window', async () => {
    const limiters = await pair(2, 300);
    expect(await countedAcross(limiters, 'prefix-d', 3)).toBe(2);
    expect(await limiters[1]!.retryAfterSeconds('prefix-d')).toBe(1);
    await new Promise((resolve) => setTimeout(resolve, 400));
    expect(await limiters[0]!.retryAfterSeconds('prefix-d')).toBe(0);
    expect(await countedAcross(limiters, 'prefix-d', 3)).toBe(2);
  });

  it('keeps keys short for long identities and expires them with the window', async () => {
    const name = randomUUID();
    const redis = await connect();
    const limiter = createRedisFailedExchangeLimiter({ redis, name, limit: 2, windowMs: 60_000, logger });
    expect(await limiter.recordFailure('x'.repeat(5_000))).toBe(0);
    const keys = await redis.keys(`ghostpay:auth:failed-exchange:${name}:*`);
    expect(keys).toHaveLength(1);
    expect(keys[0]!.length).toBeLessThan(150);
    expect(await redis.pttl(keys[0]!)).toBeGreaterThan(59_000);
  });
});

describe.skipIf(!findRedisServer())('the Redis failed-exchange limiter while Redis is down', () => {
  it('limits in this process meanwhile, and shares the budget again once Redis answers', async () => {
    const server = await startRedisServer();
    const clients = [new Redis(server.url, failedExchangeRedisOptions(200)), new Redis(server.url, failedExchangeRedisOptions(200))];
    try {
      for (const client of clients) {
        client.on('error', () => {});
        await client.connect();
      }
      const name = randomUUID();
      const limiters = clients.map((redis) => createRedisFailedExchangeLimiter({ redis, name, limit: 2, windowMs: 60_000, logger }));
      await server.stop();
      // Each instance falls back to its own in-memory limit: still limited, per process.
      expect(await countedAcross(limiters, 'prefix-e', 10)).toBe(4);
      expect(await limiters[0]!.retryAfterSeconds('prefix-e')).toBeGreaterThan(0);
      await server.start();
      const deadline = Date.now() + 10_000;
      while (clients.some((client) => client.status !== 'ready') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(await countedAcross(limiters, 'prefix-f', 10)).toBe(2);
    } finally {
      for (const client of clients) client.disconnect();
      await server.stop();
    }
  });
});
