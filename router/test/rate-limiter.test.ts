import { describe, expect, it } from 'vitest';
import { createMemoryRateLimiter, rateLimitHeaders, rateLimitIdentity } from '../src/rate-limiter.ts';

describe('the sliding-window limiter', () => {
  it("counts a user's requests under one identity whatever key they come with, each judged by the limit it names", async () => {
    const address = () => '192.0.2.1';
    const identity = rateLimitIdentity({ userId: 'usr_a' }, address);
    expect(rateLimitIdentity({ userId: 'usr_a' }, address)).toBe(identity);
    expect(rateLimitIdentity({ userId: 'usr_b' }, address)).not.toBe(identity);
    expect(rateLimitIdentity(undefined, address)).toBe('ip:192.0.2.1');
    const limiter = createMemoryRateLimiter({ windowMs: 60_000, now: () => 0 });
    const allowed: boolean[] = [];
    // Three requests with a default-limit key (6), then one with a key capped at 3, then the default key again.
    for (const limit of [6, 6, 6, 3, 6]) allowed.push((await limiter.consume(identity, limit)).allowed);
    expect(allowed).toEqual([true, true, true, false, true]);
    await limiter.close();
  });

  it('admits exactly the limit in any window, with no burst at a window boundary', async () => {
    let now = 1_000_000;
    const limiter = createMemoryRateLimiter({ windowMs: 60_000, now: () => now });
    const admitted = async (n: number) => {
      let count = 0;
      for (let i = 0; i < n; i++) if ((await limiter.consume('k', 3)).allowed) count++;
      return count;
    };
    expect(await admitted(5)).toBe(3);
    now += 59_999; // still inside the window of the first three
    expect(await admitted(1)).toBe(0);
    now += 1; // the first three leave the window together
    expect(await admitted(5)).toBe(3);
    await limiter.close();
  });

  it('says when a refused request would be admitted', async () => {
    let now = 0;
    const limiter = createMemoryRateLimiter({ windowMs: 60_000, now: () => now });
    await limiter.consume('k', 2);
    now = 20_000;
    await limiter.consume('k', 2);
    now = 30_000;
    const refused = await limiter.consume('k', 2);
    expect(refused).toMatchObject({ allowed: false, remaining: 0, retryAfterSeconds: 30, resetSeconds: 30 });
    expect(rateLimitHeaders(refused)).toEqual({
      'ratelimit-policy': '"default";q=2;w=60',
      ratelimit: '"default";r=0;t=30',
      'retry-after': '30',
    });
    await limiter.close();
  });

  it('counts a batch as several requests and refuses a batch larger than the room left', async () => {
    const limiter = createMemoryRateLimiter({ now: () => 0 });
    expect((await limiter.consume('k', 5, 4)).remaining).toBe(1);
    expect((await limiter.consume('k', 5, 2)).allowed).toBe(false);
    expect((await limiter.consume('k', 5, 1)).allowed).toBe(true);
    await limiter.close();
  });
});
