import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { resolve } from 'node:path';
import { apiKeys, newId } from '@ghostpay/db';
import { createLogger } from '@ghostpay/platform';
import {
  createSeed,
  createTestTokenIssuer,
  type LoopbackServer,
  redisUrl,
  startLoopbackServer,
  type TestTokenIssuer,
  testAudience,
  testIssuer,
} from '@ghostpay/test-support';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRedisRateLimiter, rateLimitRedisOptions } from '../src/rate-limiter.ts';
import { codes, post, repoRoot, startRouter, startStubSubgraphs, withRouter } from './router-harness.ts';

const typename = { query: '{ __typename }' };

describe('per-API-key rate limiting (in memory)', () => {
  const setup = withRouter({ database: true });

  it('refuses the 101st request inside a minute with 429, Retry-After, RateLimit fields and RATE_LIMITED', async () => {
    const auth = await setup.issuer.bearer({ userId: 'usr_rl', role: 'merchant', apiKeyId: 'key_hundred' });
    for (let i = 1; i <= 100; i++) {
      const response = await post(setup.router.graphqlUrl, typename, { authorization: auth });
      expect(response.status, `request ${i}`).toBe(200);
      // t is 0 while there is room; once the window is full it counts down to the oldest request leaving it.
      expect(response.headers.get('ratelimit')).toMatch(i < 100 ? `"default";r=${100 - i};t=0` : /^"default";r=0;t=(5[5-9]|60)$/);
    }
    const refused = await post(setup.router.graphqlUrl, typename, { authorization: auth });
    expect(refused.status).toBe(429);
    expect(codes(refused)).toEqual(['RATE_LIMITED']);
    const retryAfter = Number(refused.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThanOrEqual(55);
    expect(retryAfter).toBeLessThanOrEqual(60);
    expect(refused.headers.get('ratelimit-policy')).toBe('"default";q=100;w=60');
    expect(refused.headers.get('ratelimit')).toMatch(/^"default";r=0;t=(5[5-9]|60)$/);
    const metrics = await (await fetch(`${setup.router.url}/metrics`)).text();
    expect(metrics).toMatch(/rate_limited_requests_total\{[^}]*scope="user"[^}]*\} 1/);
    expect(metrics).toMatch(/graphql_errors_total\{[^}]*code="RATE_LIMITED"[^}]*\} 1/);
    // Another user's key is not affected.
    const other = await post(setup.router.graphqlUrl, typename, {
      authorization: await setup.issuer.bearer({ userId: 'usr_rl_other', role: 'merchant', apiKeyId: 'key_other' }),
    });
    expect(other.status).toBe(200);
  });

  it("applies the key's own rateLimitPerMinute from auth.api_keys", async () => {
    const user = await createSeed(setup.database.db).user('merchant');
    const keyId = newId('key');
    await setup.database.db
      .insert(apiKeys)
      .values({ id: keyId, userId: user.id, prefix: keyId.slice(-10), secretHash: 'x', rateLimitPerMinute: 3 });
    const auth = await setup.issuer.bearer({ userId: user.id, role: 'merchant', apiKeyId: keyId });
    const statuses = [];
    for (let i = 0; i < 4; i++) statuses.push((await post(setup.router.graphqlUrl, typename, { authorization: auth })).status);
    expect(statuses).toEqual([200, 200, 200, 429]);
  });

  it('limits requests without a token per client address', async () => {
    const anonymous = await startRouter({
      verifier: setup.issuer.verifier,
      urls: setup.subgraphs.urls,
      env: { ROUTER_ANONYMOUS_RATE_LIMIT_PER_MINUTE: '2' },
    });
    try {
      const statuses = [];
      for (let i = 0; i < 3; i++) statuses.push((await post(anonymous.graphqlUrl, typename)).status);
      expect(statuses).toEqual([200, 200, 429]);
      // Invalid tokens draw from the same per-address budget.
      const bad = await post(anonymous.graphqlUrl, typename, { authorization: 'Bearer a.b.c' });
      expect(bad.status).toBe(429);
    } finally {
      await anonymous.close();
    }
  });

  /** A router whose anonymous limit is 2, behind a trusted proxy, so a test can speak for addresses this machine does not have. */
  async function anonymousBehindProxy<T>(body: (from: (address: string) => Promise<number>) => Promise<T>) {
    const anonymous = await startRouter({
      verifier: setup.issuer.verifier,
      urls: setup.subgraphs.urls,
      env: { ROUTER_ANONYMOUS_RATE_LIMIT_PER_MINUTE: '2', ROUTER_TRUST_PROXY: 'true' },
    });
    try {
      return await body(async (address) => (await post(anonymous.graphqlUrl, typename, { 'x-forwarded-for': address })).status);
    } finally {
      await anonymous.close();
    }
  }

  it('gives all the addresses of one IPv6 /64 one anonymous allowance', async () => {
    await anonymousBehindProxy(async (from) => {
      // One client rotating through the 2^64 addresses of its /64: one budget.
      expect([await from('2001:db8::1'), await from('2001:db8::2'), await from('2001:db8:0:0:ffff::3')]).toEqual([200, 200, 429]);
      // The next /64 is someone else.
      expect(await from('2001:db8:0:1::1')).toBe(200);
    });
  });

  it('gives an IPv4 client one anonymous allowance whether written IPv4-mapped, plain or with a port', async () => {
    await anonymousBehindProxy(async (from) => {
      // A dual-stack proxy writes an IPv4 peer as ::ffff:a.b.c.d; some proxies add the source port.
      expect([await from('::ffff:192.0.2.1'), await from('192.0.2.1'), await from('192.0.2.1:51234')]).toEqual([200, 200, 429]);
      expect(await from('192.0.2.2')).toBe(200);
    });
  });
});

describe.skipIf(!redisUrl())('rate limiting shared through Redis', () => {
  let issuer: TestTokenIssuer;
  let jwks: LoopbackServer;
  let jwksUrl: string;

  beforeAll(async () => {
    issuer = await createTestTokenIssuer();
    jwks = await startLoopbackServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(issuer.jwks));
    });
    jwksUrl = `${jwks.url}/.well-known/jwks.json`;
  });
  const children: ChildProcess[] = [];
  afterAll(async () => {
    // Also those whose start timed out: no router process outlives the test file.
    await Promise.all(children.map((child) => stop(child)));
    await jwks?.close();
  });

  /** Starts `node router/src/main.ts` and resolves with its URL once it logs that it listens. */
  function startRouterProcess(env: Record<string, string>): Promise<{ url: string; child: ChildProcess }> {
    const child = spawn(resolve(repoRoot, 'node_modules/.bin/node'), [resolve(repoRoot, 'router/src/main.ts')], {
      env: {
        PATH: process.env.PATH,
        ROUTER_PORT: '0',
        LOG_LEVEL: 'info',
        JWT_ISSUER: testIssuer,
        JWT_AUDIENCE: testAudience,
        JWKS_URL: jwksUrl,
        ROUTER_SUBGRAPH_URLS: 'auth=http://127.0.0.1:9/graphql,cards=http://127.0.0.1:9/graphql,charges=http://127.0.0.1:9/graphql',
        ...env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(child);
    return new Promise((resolveStart, reject) => {
      let output = '';
      // Generous: on a loaded 2-core machine, importing the gateway and telemetry takes a while.
      const timer = setTimeout(() => reject(new Error(`router process did not start:\n${output}`)), 60_000);
      child.stdout?.on('data', (chunk: Buffer) => {
        output += chunk.toString();
        const match =
          /"url":"(http:\/\/127\.0\.0\.1:\d+)"[^\n]*"msg":"listening"|"msg":"listening"[^\n]*"url":"(http:\/\/127\.0\.0\.1:\d+)"/.exec(
            output,
          );
        if (match) {
          clearTimeout(timer);
          resolveStart({ url: (match[1] ?? match[2]) as string, child });
        }
      });
      child.stderr?.on('data', (chunk: Buffer) => {
        output += chunk.toString();
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`router process exited with ${code}:\n${output}`));
      });
    });
  }

  async function stop(child: ChildProcess) {
    // A process ended by a signal has signalCode set and exitCode null.
    if (child.exitCode !== null || child.signalCode !== null) return;
    await new Promise<void>((done) => {
      child.once('exit', () => done());
      child.kill('SIGTERM');
      setTimeout(() => child.kill('SIGKILL'), 10_000).unref();
    });
  }

  it('admits exactly 100 of 300 requests for one key across two router processes, one count shared by both', async () => {
    const [a, b] = await Promise.all([startRouterProcess({ REDIS_URL: redisUrl() }), startRouterProcess({ REDIS_URL: redisUrl() })]);
    try {
      const auth = await issuer.bearer({ userId: 'usr_shared', role: 'merchant', apiKeyId: `key_shared_${randomUUID()}` });
      // The count is shared, not per process: a request through b sees the one a admitted.
      const throughA = await post(`${a.url}/graphql`, typename, { authorization: auth });
      const throughB = await post(`${b.url}/graphql`, typename, { authorization: auth });
      expect([throughA.status, throughB.status]).toEqual([200, 200]);
      expect(throughA.headers.get('ratelimit')).toBe('"default";r=99;t=0');
      expect(throughB.headers.get('ratelimit')).toBe('"default";r=98;t=0');
      // Then 298 at once, half through each: exactly the 98 left are admitted. (Which replica
      // admits them is not fixed: one replica's pipelined batch often takes the whole rest.)
      const responses = await Promise.all(
        Array.from({ length: 298 }, (_, i) => post(`${(i % 2 === 0 ? a : b).url}/graphql`, typename, { authorization: auth })),
      );
      const statuses = responses.map((r) => r.status);
      for (const { url } of [a, b]) {
        const metrics = await (await fetch(`${url}/metrics`)).text();
        expect(metrics, 'no decision may have fallen back to the local limiter').toMatch(
          /rate_limit_redis_fallback_total\{service="router"\} 0/,
        );
      }
      expect(statuses.filter((s) => s === 200)).toHaveLength(98);
      expect(statuses.filter((s) => s === 429)).toHaveLength(200);
    } finally {
      await Promise.all([stop(a.child), stop(b.child)]);
    }
  }, 150_000);

  /**
   * The router's limiter on a Redis client as main.ts makes it (auto-pipelining, no offline
   * queue, the given command timeout), once connected; `fallbacks()` counts local decisions.
   */
  async function routerLimiter(commandTimeoutMs = 1000) {
    const redis = new Redis(redisUrl() as string, rateLimitRedisOptions(commandTimeoutMs));
    await once(redis, 'ready');
    let fallbacks = 0;
    const limiter = createRedisRateLimiter({
      redis,
      logger: createLogger({ service: 'test', level: 'silent' }),
      onFallback: () => fallbacks++,
    });
    const close = async () => {
      await limiter.close();
      redis.disconnect();
    };
    return { redis, limiter, fallbacks: () => fallbacks, close };
  }

  it('sends the decisions asked for together in one write, and still admits exactly the limit', async () => {
    const { redis, limiter, fallbacks, close } = await routerLimiter();
    const socket = redis.stream as unknown as { write: (...args: unknown[]) => boolean };
    const write = socket.write;
    let writes = 0;
    socket.write = function (this: unknown, ...args: unknown[]) {
      writes++;
      return write.apply(this, args);
    };
    try {
      const identity = `batch-${randomUUID()}`;
      const decisions = await Promise.all(Array.from({ length: 300 }, () => limiter.consume(identity, 100)));
      expect(fallbacks()).toBe(0);
      const admitted = decisions.filter((d) => d.allowed);
      expect(admitted).toHaveLength(100);
      // Each admitted request saw its own place in the window: 99 left after the first, … 0 after the last.
      expect(admitted.map((d) => d.remaining).sort((a, b) => b - a)).toEqual(Array.from({ length: 100 }, (_, i) => 99 - i));
      expect(decisions.filter((d) => !d.allowed).every((d) => d.remaining === 0 && d.retryAfterSeconds > 0)).toBe(true);
      // One write for the 300 script calls (one command each) instead of 300: the first also carries the script's text.
      expect(writes).toBe(1);
    } finally {
      socket.write = write;
      await close();
    }
  });

  it('decides locally, without waiting for Redis, while Redis hangs', async () => {
    // 200 ms command timeout. Redis answers no script call (CLIENT PAUSE WRITE blocks EVAL and
    // EVALSHA, not the admin connection's UNPAUSE) until the test unpauses it, after the
    // assertions: every decision must come while Redis still hangs. A limiter that waited for
    // Redis would get its answers only once the pause ends, and count no local decision.
    const { limiter, fallbacks, close } = await routerLimiter(200);
    const admin = new Redis(redisUrl() as string);
    const identity = `hung-${randomUUID()}`;
    try {
      expect((await limiter.consume(identity, 100)).allowed).toBe(true);
      expect(fallbacks()).toBe(0);
      await admin.call('CLIENT', 'PAUSE', '10000', 'WRITE');
      // A batch goes out and hangs; a second is asked for while the first is on the wire, so it
      // waits for the first to time out and then times out itself.
      const first = Array.from({ length: 5 }, () => limiter.consume(identity, 100));
      await new Promise((done) => setTimeout(done, 50));
      const second = Array.from({ length: 5 }, () => limiter.consume(identity, 100));
      const decisions = await Promise.all([...first, ...second]);
      // Ten local decisions (none from Redis, which is still paused: it is unpaused only below).
      expect(fallbacks()).toBe(10);
      expect(decisions.every((d) => d.allowed)).toBe(true);
    } finally {
      await admin.call('CLIENT', 'UNPAUSE');
      admin.disconnect();
      await close();
    }
  });

  it('sends the script by hash and keeps one count when Redis forgets its scripts (NOSCRIPT → EVAL once)', async () => {
    const { redis, limiter, fallbacks, close } = await routerLimiter();
    const identity = `script-${randomUUID()}`;
    try {
      await redis.script('FLUSH');
      const remaining = [];
      for (let i = 0; i < 2; i++) remaining.push((await limiter.consume(identity, 4)).remaining);
      await redis.script('FLUSH'); // as after a Redis restart
      for (let i = 0; i < 3; i++) remaining.push((await limiter.consume(identity, 4)).remaining);
      expect(remaining).toEqual([3, 2, 1, 0, 0]);
      expect((await limiter.consume(identity, 4)).allowed).toBe(false);
      expect(fallbacks()).toBe(0);
      const calls = (command: string, stats: string) => Number(stats.match(new RegExp(`cmdstat_${command}:calls=(\\d+)`))?.[1] ?? 0);
      const before = await redis.info('commandstats');
      await limiter.consume(identity, 4);
      const after = await redis.info('commandstats');
      expect(calls('evalsha', after)).toBeGreaterThan(calls('evalsha', before));
    } finally {
      await close();
    }
  });

  it('fails open to a local limit with a metric when Redis is down', async () => {
    // The router's client options, pointed at a port nothing listens on, never reconnecting.
    const deadRedis = new Redis('redis://127.0.0.1:9', { ...rateLimitRedisOptions(1000), lazyConnect: true, retryStrategy: () => null });
    deadRedis.on('error', () => {});
    const subgraphs = await startStubSubgraphs(issuer.verifier, ['auth']);
    const router = await startRouter({
      verifier: issuer.verifier,
      urls: subgraphs.urls,
      redis: deadRedis,
      env: { ROUTER_RATE_LIMIT_PER_MINUTE: '3' },
    });
    try {
      const auth = await issuer.bearer({ userId: 'usr_down', role: 'merchant', apiKeyId: 'key_down' });
      const statuses = [];
      for (let i = 0; i < 4; i++) statuses.push((await post(router.graphqlUrl, typename, { authorization: auth })).status);
      expect(statuses).toEqual([200, 200, 200, 429]);
      const metrics = await (await fetch(`${router.url}/metrics`)).text();
      expect(metrics).toMatch(/rate_limit_redis_fallback_total\{service="router"\} 4/);
    } finally {
      await router.close();
      await subgraphs.close();
      deadRedis.disconnect();
    }
  });
});
