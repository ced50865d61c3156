import { describe, expect, it } from 'vitest';
import { apiKeyMatches, generateApiKey, parseApiKey } from '../src/api-key-format.ts';
import { createFailedExchangeLimiter } from '../src/failed-exchange-limiter.ts';
import { parseKekRing } from '../src/key-encryption.ts';

describe('failed-exchange limiter', () => {
  it('allows the limit, refuses the next attempt, and lets it through once the oldest failure leaves the window', () => {
    let now = 1_000_000;
    const limiter = createFailedExchangeLimiter({ limit: 3, windowMs: 60_000, now: () => now });
    for (let n = 0; n < 3; n++) {
      expect(limiter.retryAfterSeconds('a')).toBe(0);
      limiter.recordFailure('a');
      now += 10_000;
    }
    // Failures at 0 s, 10 s, 20 s; now 30 s: the first leaves the window at 60 s.
    expect(limiter.retryAfterSeconds('a')).toBe(30);
    expect(limiter.retryAfterSeconds('b')).toBe(0);
    now += 30_000;
    expect(limiter.retryAfterSeconds('a')).toBe(0);
  });

  it('counts a failure only under the limit, and tells how long to wait past it', () => {
    let now = 1_000_000;
    const limiter = createFailedExchangeLimiter({ limit: 2, windowMs: 60_000, now: () => now });
    expect(limiter.recordFailure('a')).toBe(0);
    now += 5_000;
    expect(limiter.recordFailure('a')).toBe(0);
    // At the limit: not counted (the window does not grow), the caller answers RATE_LIMITED.
    expect(limiter.recordFailure('a')).toBe(55);
    now += 55_000;
    expect(limiter.retryAfterSeconds('a')).toBe(0);
    expect(limiter.recordFailure('a')).toBe(0);
    expect(limiter.recordFailure('a')).toBe(5);
  });

  it('judges a call by the lower limit it names, against the same failures', () => {
    let now = 1_000_000;
    const limiter = createFailedExchangeLimiter({ limit: 3, windowMs: 60_000, now: () => now });
    expect(limiter.recordFailure('a', 1)).toBe(0);
    now += 10_000;
    // One failure: at a limit of 1, wait until it leaves the window; at the limiter's own 3, go ahead.
    expect(limiter.recordFailure('a', 1)).toBe(50);
    expect(limiter.retryAfterSeconds('a', 1)).toBe(50);
    expect(limiter.retryAfterSeconds('a')).toBe(0);
    expect(limiter.recordFailure('a')).toBe(0);
    expect(limiter.recordFailure('a')).toBe(0);
    expect(limiter.recordFailure('a')).toBe(50);
  });

  it('forgets the least recently failed identities beyond its bound', () => {
    const limiter = createFailedExchangeLimiter({ limit: 1, windowMs: 60_000, maxTracked: 2 });
    limiter.recordFailure('first');
    limiter.recordFailure('second');
    limiter.recordFailure('third');
    expect(limiter.retryAfterSeconds('first')).toBe(0);
    expect(limiter.retryAfterSeconds('third')).toBeGreaterThan(0);
  });
});

describe('API key format', () => {
  it('makes distinct high-entropy keys whose prefix parses back and whose hash matches only the same key', () => {
    const keys = Array.from({ length: 50 }, () => generateApiKey());
    expect(new Set(keys.map((key) => key.key)).size).toBe(50);
    for (const { key, prefix, hash } of keys.slice(0, 5)) {
      expect(key).toMatch(/^gp_[0-9A-Za-z]{12}_[0-9A-Za-z]{43}$/);
      expect(parseApiKey(key)).toEqual({ prefix });
      expect(apiKeyMatches(key, hash)).toBe(true);
      expect(apiKeyMatches(`${key.slice(0, -1)}${key.endsWith('a') ? 'b' : 'a'}`, hash)).toBe(false);
    }
    expect(parseApiKey('gp_short_secret')).toBeUndefined();
  });
});

describe('KEK ring parsing', () => {
  const key = Buffer.alloc(32, 7).toString('base64');

  it('reads a bare key as "default" and a keyring with the first entry as primary', () => {
    expect(parseKekRing(key).primary.id).toBe('default');
    const ring = parseKekRing(`k2:${key}, k1:${Buffer.alloc(32, 1).toString('base64')}`);
    expect(ring.primary.id).toBe('k2');
    expect([...ring.byId.keys()]).toEqual(['k2', 'k1']);
  });

  it('refuses short keys and duplicate ids without echoing key material', () => {
    const short = Buffer.alloc(16, 9).toString('base64');
    expect(() => parseKekRing(`k1:${short}`)).toThrow(/must be 32 bytes/);
    try {
      parseKekRing(`k1:${short}`);
    } catch (error) {
      expect((error as Error).message).not.toContain(short);
    }
    expect(() => parseKekRing(`k1:${key},k1:${key}`)).toThrow(/appears twice/);
  });
});
