/**
 * npm start with REDIS_URL: the router's rate-limit counters live in that Redis (shared and
 * exact across processes), as in router/src/main.ts, and the stack closes its client on stop.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger } from '@ghostpay/platform';
import { findRedisServer, inCi, type RedisServer, startRedisServer } from '@ghostpay/test-support';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Stack, startStack } from '../src/index.ts';

const hasRedis = Boolean(findRedisServer());
/** As in the global setup: under CI (`inCi()`) a missing redis-server fails this file instead of skipping it. */
const ci = inCi();

describe.skipIf(!hasRedis && !ci)('npm start with REDIS_URL', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'ghostpay-stack-redis-'));
  let redisServer: RedisServer;
  let observer: Redis;
  let stack: Stack | undefined;

  beforeAll(async () => {
    redisServer = await startRedisServer();
    observer = new Redis(redisServer.url, { lazyConnect: true });
    await observer.connect();
  });
  afterAll(async () => {
    await stack?.close();
    observer?.disconnect();
    await redisServer?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  /** Clients connected to the Redis server, other than the observer. */
  const otherClients = async () =>
    String(await observer.call('CLIENT', 'LIST'))
      .trim()
      .split('\n').length - 1;

  it('keeps the router’s rate-limit counters in that Redis, and disconnects from it on stop', async () => {
    const env = { ...process.env, DATABASE_URL: undefined, MONGODB_URL: undefined, SECRETS_DIR: undefined, REDIS_URL: redisServer.url };
    stack = await startStack({ dataDir, env, randomPorts: true, logger: createLogger({ service: 'stack-test', level: 'silent' }) });
    expect(await otherClients()).toBeGreaterThan(0);

    const token = await fetch(`${stack.urls.bridge}/auth/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ api_key: stack.credentials.merchant.apiKey }),
    });
    expect(token.status).toBe(200);
    const { access_token: accessToken } = (await token.json()) as { access_token: string };
    const me = await fetch(stack.urls.graphql, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${accessToken}` },
      body: JSON.stringify({ query: '{ __typename }' }),
    });
    expect(me.status).toBe(200);
    expect(await observer.keys('ghostpay:rl:*')).not.toEqual([]);

    await stack.close();
    stack = undefined;
    // The server notices a closed connection a moment later.
    await expect.poll(otherClients, { timeout: 5_000 }).toBe(0);
  }, 120_000);
});
