import { requestText } from '@ghostpay/platform';
import { Pool } from 'undici';
import { stealMeter } from './cpu-sampler.ts';

export interface LoadRequest {
  method: 'GET' | 'POST';
  path: string;
  headers: Record<string, string>;
  body?: string;
}

export interface LoadSpec {
  /** `http://127.0.0.1:port` */
  origin: string;
  /** Concurrent requests (closed loop) or the cap on outstanding ones (open loop). */
  connections: number;
  durationMs: number;
  /** Open loop at this many requests per second (latency counted from each request's scheduled time); absent → closed loop, as fast as answers come. */
  ratePerSec?: number;
  /** Builds the i-th request (a fresh card, a fresh idempotency key, its own Authorization header). */
  request: (i: number) => LoadRequest;
  /** True when the i-th response is a success with the right content. */
  check: (status: number, body: string, i: number) => boolean;
}

export interface LoadResult {
  ok: number;
  errors: number;
  /** Successful requests per second over the measured window. */
  rps: number;
  p50: number;
  p95: number;
  p99: number;
  seconds: number;
  errorSamples: string[];
  /** p95 of the requests scheduled (open loop) or started (closed loop) in each second of the window: shows whether a tail is a few stalls or all along. */
  p95BySecond: number[];
  /** CPU time the hypervisor gave to other guests during the window, % of the machine's (see stealMeter). */
  stealPct?: number;
  /**
   * Open loop: for each second of the window, the most the generator woke late to send a request
   * that was due (its own event loop busy: garbage collection, the CPU sampler, the machine). That
   * much of a request's latency is the tool's, not the system's. Empty in closed loop.
   */
  lateBySecond?: number[];
  /** Every successful request's latency (ms), in completion order: what {@link combineWindows} merges. */
  latencies: number[];
}

export function percentile(sorted: Float64Array | number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[index] as number;
}

export function summarize(
  latencies: number[],
  ok: number,
  errors: number,
  seconds: number,
  errorSamples: string[],
  startedAtMs: number[] = [],
): LoadResult {
  const sorted = Float64Array.from(latencies).sort();
  const bySecond: number[][] = [];
  for (const [i, at] of startedAtMs.entries()) {
    const second = Math.floor(at / 1000);
    bySecond[second] ??= [];
    bySecond[second].push(latencies[i] as number);
  }
  return {
    p95BySecond: Array.from(bySecond, (bucket) => percentile(Float64Array.from(bucket ?? []).sort(), 95)),
    ok,
    errors,
    rps: ok / seconds,
    p50: percentile(sorted, 50),
    p95: percentile(sorted, 95),
    p99: percentile(sorted, 99),
    seconds,
    errorSamples,
    latencies,
  };
}

/**
 * Several measured windows of the same scenario as one: requests and seconds add up, the
 * percentiles are those of every latency together, steal is weighted by each window's length.
 * (The bench alternates short windows of the scenarios it compares, so a slow spell of the VM
 * lands on all of them instead of on whichever happened to run then.)
 */
export function combineWindows(windows: LoadResult[]): LoadResult {
  const seconds = windows.reduce((sum, w) => sum + w.seconds, 0);
  const combined = summarize(
    windows.flatMap((w) => w.latencies),
    windows.reduce((sum, w) => sum + w.ok, 0),
    windows.reduce((sum, w) => sum + w.errors, 0),
    seconds,
    windows.flatMap((w) => w.errorSamples).slice(0, 3),
  );
  const metered = windows.filter((w) => w.stealPct !== undefined);
  const meteredSeconds = metered.reduce((sum, w) => sum + w.seconds, 0);
  return {
    ...combined,
    p95BySecond: windows.flatMap((w) => w.p95BySecond),
    ...(meteredSeconds > 0 ? { stealPct: metered.reduce((sum, w) => sum + (w.stealPct ?? 0) * w.seconds, 0) / meteredSeconds } : {}),
  };
}

/**
 * Keep-alive pools by origin and concurrency, shared by the runs against the same server: a
 * measured window follows its warm-up on the warm-up's connections, as a real client's
 * would, instead of opening new ones in its first second.
 */
const pools = new Map<string, Pool>();
function poolFor(origin: string, connections: number): Pool {
  const key = `${origin} ${connections}`;
  let pool = pools.get(key);
  if (!pool) {
    pool = new Pool(origin, { connections, pipelining: 1, keepAliveTimeout: 60_000 });
    pools.set(key, pool);
  }
  return pool;
}

/** Closes the pools of every origin (`origin` given: that one's only, e.g. a stack about to stop). */
export async function closeLoadPools(origin?: string): Promise<void> {
  for (const [key, pool] of pools) {
    if (origin && !key.startsWith(`${origin} `)) continue;
    pools.delete(key);
    await pool.close();
  }
}

/**
 * A small HTTP load generator over an undici keep-alive pool. Not autocannon: autocannon
 * reports no p95 and cannot give each request its own body and headers without a per-request
 * callback that costs as much. Latencies of every request are kept, so percentiles are exact.
 */
export async function runLoad(spec: LoadSpec): Promise<LoadResult> {
  const pool = poolFor(spec.origin, spec.connections);
  const latencies: number[] = [];
  /** When each successful request was scheduled, ms into the window (same order as `latencies`). */
  const startedAtMs: number[] = [];
  const errorSamples: string[] = [];
  let ok = 0;
  let errors = 0;
  let issued = 0;
  const started = performance.now();
  const deadline = started + spec.durationMs;
  const steal = stealMeter();

  const lateBySecond: number[] = [];
  const one = async (i: number, scheduledAt: number) => {
    const request = spec.request(i);
    try {
      // requestText (dispatch), not pool.request: the latter's per-request AsyncResource kept
      // much of the generator's garbage alive through scavenges (platform/src/http-request.ts).
      const response = await requestText(pool, { ...request, headersTimeout: 30_000, bodyTimeout: 30_000 });
      const body = response.text;
      if (spec.check(response.statusCode, body, i)) {
        ok++;
        latencies.push(performance.now() - scheduledAt);
        startedAtMs.push(scheduledAt - started);
      } else {
        errors++;
        if (errorSamples.length < 3) errorSamples.push(`${response.statusCode} ${body.slice(0, 300)}`);
      }
    } catch (error) {
      errors++;
      if (errorSamples.length < 3) errorSamples.push(String((error as Error).message));
    }
  };

  if (spec.ratePerSec) {
    const interval = 1000 / spec.ratePerSec;
    const inFlight = new Set<Promise<void>>();
    while (performance.now() < deadline) {
      const now = performance.now();
      const due = Math.floor((now - started) / interval) + 1;
      while (issued < due && inFlight.size < spec.connections * 8) {
        const scheduledAt = started + issued * interval;
        const p = one(issued++, scheduledAt).finally(() => inFlight.delete(p));
        inFlight.add(p);
      }
      if (inFlight.size >= spec.connections * 8) {
        // At the cap on outstanding requests: wait for one to finish (the late ones still count from their schedule).
        await Promise.race(inFlight);
      } else {
        // Sleep until the next request is due (one wake-up per request at most, not a poll).
        const nextAt = started + issued * interval;
        await new Promise((r) => setTimeout(r, Math.max(0, nextAt - performance.now())));
        // How late this process woke for it: its own event loop's delay (GC, other work, the
        // machine), as opposed to waiting at the cap above, which is the system being slow.
        const second = Math.floor((nextAt - started) / 1000);
        lateBySecond[second] = Math.max(lateBySecond[second] ?? 0, performance.now() - nextAt);
      }
    }
    await Promise.all(inFlight);
  } else {
    const worker = async () => {
      while (performance.now() < deadline) await one(issued++, performance.now());
    };
    await Promise.all(Array.from({ length: spec.connections }, worker));
  }
  const seconds = (performance.now() - started) / 1000;
  return {
    ...summarize(latencies, ok, errors, seconds, errorSamples, startedAtMs),
    stealPct: steal.percent(),
    lateBySecond: Array.from(lateBySecond, (ms) => ms ?? 0),
  };
}
