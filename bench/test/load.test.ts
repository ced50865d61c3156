import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closeLoadPools, combineWindows, percentile, runLoad, summarize } from '../src/load.ts';

/**
 * The load generator's figures: exact percentiles, errors counted by the caller's check, and
 * in open loop latency counted from each request's scheduled time (a stall is not hidden).
 */
describe('percentile', () => {
  it('is the nearest-rank value of a sorted list, NaN for none', () => {
    const sorted = Float64Array.from({ length: 100 }, (_, i) => i + 1);
    expect([50, 95, 99, 100].map((p) => percentile(sorted, p))).toEqual([50, 95, 99, 100]);
    expect(percentile([7], 99)).toBe(7);
    expect(percentile([], 50)).toBeNaN();
  });

  it('summarizes per second of the window by when each request started', () => {
    const result = summarize([5, 6, 100, 7], 4, 1, 2, ['500'], [10, 20, 1500, 1900]);
    expect(result).toMatchObject({ ok: 4, errors: 1, rps: 2, p50: 6, p99: 100, errorSamples: ['500'] });
    expect(result.p95BySecond).toEqual([6, 100]);
  });

  it('combines windows into one: counts and seconds add up, percentiles over every latency, steal weighted by length', () => {
    const fast = { ...summarize([1, 2, 3, 4], 4, 0, 1, []), stealPct: 0 };
    const slow = { ...summarize([10, 20, 30, 40, 50, 60], 6, 2, 3, ['500 a', '500 b']), stealPct: 40 };
    const unmetered = summarize([5, 6], 2, 1, 1, ['timeout']);
    const combined = combineWindows([fast, slow, unmetered]);
    expect(combined).toMatchObject({ ok: 12, errors: 3, seconds: 5, rps: 12 / 5, p50: 6, p99: 60 });
    expect(combined.latencies).toHaveLength(12);
    expect(combined.errorSamples).toEqual(['500 a', '500 b', 'timeout']);
    // (0 × 1 s + 40 × 3 s) / 4 s: the window without a steal reading does not dilute it.
    expect(combined.stealPct).toBe(30);
    expect(combineWindows([unmetered]).stealPct).toBeUndefined();
  });
});

describe('runLoad against a local server', () => {
  let server: Server;
  let origin: string;
  let stallNext = 0;
  let received = 0;
  /** Requests the generator has built (`spec.request` called), and how many when the stalled one was answered. */
  let built = 0;
  let builtWhenStallAnswered = 0;

  beforeAll(async () => {
    server = createServer((req, res) => {
      received++;
      const n = Number(req.headers['x-n']);
      const answer = () => {
        // Every fifth request answers 500: the caller's check counts it as an error.
        res.statusCode = n % 5 === 4 ? 500 : 200;
        res.end(`answer ${n}`);
      };
      if (stallNext > 0) {
        const ms = stallNext;
        stallNext = 0;
        setTimeout(() => {
          builtWhenStallAnswered = built;
          answer();
        }, ms);
      } else answer();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await closeLoadPools();
    await new Promise((resolve) => server.close(resolve));
  });

  const spec = (extra: Partial<Parameters<typeof runLoad>[0]>) => ({
    origin,
    connections: 2,
    durationMs: 600,
    request: (i: number) => {
      built++;
      return { method: 'GET' as const, path: '/', headers: { 'x-n': String(i) } };
    },
    check: (status: number, body: string, i: number) => status === 200 && body === `answer ${i}`,
    ...extra,
  });

  it('closed loop: every answered request is an ok or an error, judged by the check', async () => {
    received = 0;
    const result = await runLoad(spec({}));
    expect(result.ok + result.errors).toBe(received);
    expect(result.errors).toBe(Math.floor(received / 5));
    expect(result.errorSamples[0]).toMatch(/^500 answer \d+$/);
    expect(result.rps).toBeCloseTo(result.ok / result.seconds, 6);
  });

  // No bound on how late a timer may fire here: CI runs this file beside other suites on two
  // cores, where one can fire hundreds of milliseconds behind. What is checked is the order of
  // events (what the generator had sent when the stalled answer came) and lower bounds that a
  // slower machine only makes larger.
  it('open loop: issues no more than the schedule, and a stall counts against the requests queued behind it', async () => {
    received = 0;
    built = 0;
    builtWhenStallAnswered = 0;
    stallNext = 700;
    const result = await runLoad(spec({ connections: 1, ratePerSec: 50, durationMs: 1000 }));
    // 50/s for 1 s: at most 51 scheduled (the first is due at 0).
    expect(result.ok + result.errors).toBeLessThanOrEqual(51);
    // The first request stalled 700 ms on the only connection; the ones scheduled behind it
    // waited for it, and their latency counts from when they were due, not when they were sent.
    expect(result.p99).toBeGreaterThanOrEqual(600);
    expect(result.p95BySecond[0]).toBeGreaterThanOrEqual(500);
    // The server stalled, not the generator: while the first answer was outstanding it kept
    // issuing the requests falling due, up to its cap on outstanding ones (8 per connection). A
    // generator that waited for the connection would have built only the stalled one. Its timers
    // (due every 20 ms) fire before the server's 700 ms one however late both are, and each
    // wake-up issues every request then due, so a busy machine does not change the count.
    expect(builtWhenStallAnswered).toBe(8);
    expect(result.lateBySecond?.length).toBeGreaterThan(0);
  });

  it('open loop: a stall of the generator itself shows as lateness in the second it happened', async () => {
    // Block this process (the generator's) for 650 ms, a quarter of a second into the window.
    const blocker = setTimeout(() => {
      const until = performance.now() + 650;
      while (performance.now() < until) {}
    }, 250);
    const result = await runLoad(spec({ connections: 1, ratePerSec: 50, durationMs: 2000 }));
    clearTimeout(blocker);
    const late = result.lateBySecond ?? [];
    expect(late[0]).toBeGreaterThanOrEqual(500);
    // Late requests count from their schedule, so the blocked stretch shows in latency as well.
    expect(result.p95BySecond[0]).toBeGreaterThanOrEqual(500);
    // Lateness belongs to the second it happened in: the next second's is its own (no bound on
    // it, a busy machine may wake late there too, but far less than the 650 ms block).
    expect(late[1]).toBeLessThan(late[0]!);
  });

  it('closed loop: no lateness (nothing is scheduled)', async () => {
    const result = await runLoad(spec({}));
    expect(result.lateBySecond).toEqual([]);
  });
});
