import type { RequestEvent } from '@ghostpay/platform';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type AnalyticsStore,
  anonymousOperation,
  createAnalyticsStore,
  type DocumentStore,
  isErrorEvent,
  latencyBucketBoundsMs,
} from '../src/index.ts';
import { backends } from './backends.ts';
import { randomEvents } from './events.ts';

const hour = 3_600_000;
// Whole hours in the recent past, so the 30-day TTL keeps everything.
const start = Math.floor((Date.now() - 6 * hour) / hour) * hour;
const events = randomEvents(1_500, start, 3 * hour);
const ts = (e: RequestEvent) => Date.parse(e.timestamp);

/** Nearest-rank percentile of raw latencies, rounded up to its histogram bucket and capped by the max: what the buckets can tell. */
function expectedPercentile(latencies: number[], q: number): number {
  const sorted = [...latencies].sort((a, b) => a - b);
  const exact = sorted[Math.max(1, Math.ceil(q * sorted.length)) - 1]!;
  const max = sorted.at(-1)!;
  const bound = latencyBucketBoundsMs.find((b) => exact <= b);
  return bound === undefined ? max : Math.min(bound, max);
}

describe.each(backends)('analytics store on $name', (backend) => {
  let store: DocumentStore;
  let analytics: AnalyticsStore;
  let cleanup: () => Promise<void>;

  beforeAll(async () => {
    ({ store, cleanup } = await backend.open());
    analytics = createAnalyticsStore({ db: store.db, logRetentionDays: 30 });
    await analytics.ensureIndexes();
    // Several batches, as the emitter sends them.
    for (let i = 0; i < events.length; i += 200) {
      const result = await analytics.ingest(events.slice(i, i + 200));
      expect(result).toEqual({ stored: Math.min(200, events.length - i), duplicates: 0 });
    }
  });
  afterAll(async () => {
    await analytics?.settle();
    await cleanup?.();
  });

  it('reports usage per key per hour equal to counting the raw events', async () => {
    for (const apiKeyId of ['key_alpha', 'key_beta']) {
      const mine = events.filter((e) => e.apiKeyId === apiKeyId);
      const expected = new Map<number, { requests: number; errors: number }>();
      for (const e of mine) {
        const period = Math.floor(ts(e) / hour) * hour;
        const p = expected.get(period) ?? { requests: 0, errors: 0 };
        p.requests++;
        if (e.errorCodes.length > 0 || e.httpStatus >= 400) p.errors++;
        expected.set(period, p);
      }
      const points = await analytics.usage(apiKeyId, new Date(start), new Date(start + 3 * hour), 'HOUR');
      expect(points.map((p) => ({ start: p.start.getTime(), requests: p.requests, errors: p.errors }))).toEqual(
        [...expected].sort(([a], [b]) => a - b).map(([period, p]) => ({ start: period, ...p })),
      );
      const total = mine.reduce((sum, e) => sum + e.latencyMs, 0);
      const day = await analytics.usage(apiKeyId, new Date(start), new Date(start + 3 * hour), 'DAY');
      expect(day.reduce((s, p) => s + p.requests, 0)).toBe(mine.length);
      expect(day.reduce((s, p) => s + p.averageLatencyMs * p.requests, 0)).toBeCloseTo(total, 3);
    }
  });

  it('reports per-minute usage over a sub-range with the [from, to) rule', async () => {
    const from = start + 37 * 60_000;
    const to = start + 71 * 60_000;
    const expected = events.filter((e) => e.apiKeyId === 'key_gamma' && ts(e) >= from && ts(e) < to).length;
    const points = await analytics.usage('key_gamma', new Date(from), new Date(to), 'MINUTE');
    expect(points.reduce((s, p) => s + p.requests, 0)).toBe(expected);
    expect(points.every((p) => p.start.getTime() % 60_000 === 0 && p.start.getTime() >= from && p.start.getTime() < to)).toBe(true);
  });

  it('computes p50, p95 and p99 from the buckets as the raw latencies predict, over any range', async () => {
    for (const [name, from, to] of [
      ['ChargeCard', start, start + 3 * hour],
      ['GetCard', start + hour, start + 2 * hour],
      ['(anonymous)', start, start + 3 * hour],
    ] as const) {
      const latencies = events
        .filter((e) => (e.operationName ?? '(anonymous)') === name && ts(e) >= from && ts(e) < to)
        .map((e) => e.latencyMs);
      const result = await analytics.latency(name, new Date(from), new Date(to));
      expect(result.count).toBe(latencies.length);
      expect(result.p50Ms).toBe(expectedPercentile(latencies, 0.5));
      expect(result.p95Ms).toBe(expectedPercentile(latencies, 0.95));
      expect(result.p99Ms).toBe(expectedPercentile(latencies, 0.99));
      expect(result.maxMs).toBe(Math.max(...latencies));
    }
  });

  it('answers null percentiles for an operation without traffic', async () => {
    expect(await analytics.latency('NoSuchOperation', new Date(start), new Date(start + hour))).toEqual({
      operationName: 'NoSuchOperation',
      count: 0,
      p50Ms: null,
      p95Ms: null,
      p99Ms: null,
      maxMs: null,
    });
  });

  it('ranks top operations and computes the error rate like the raw events do', async () => {
    const from = start + 30 * 60_000;
    const to = start + 150 * 60_000;
    const inRange = events.filter((e) => ts(e) >= from && ts(e) < to);
    const counts = new Map<string, number>();
    for (const e of inRange) counts.set(e.operationName ?? '(anonymous)', (counts.get(e.operationName ?? '(anonymous)') ?? 0) + 1);
    const expected = [...counts].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])).slice(0, 3);
    const top = await analytics.topOperations(new Date(from), new Date(to), 3);
    expect(top.map((o) => [o.operationName, o.requests])).toEqual(expected);

    const errors = inRange.filter(isErrorEvent).length;
    expect(await analytics.errorRate(new Date(from), new Date(to))).toEqual({
      requests: inRange.length,
      errors,
      rate: errors / inRange.length,
    });
  });

  it('does not count a retried batch twice', async () => {
    const before = await analytics.usage('key_alpha', new Date(start), new Date(start + 3 * hour), 'DAY');
    const result = await analytics.ingest(events.slice(0, 50));
    expect(result).toEqual({ stored: 0, duplicates: 50 });
    expect(await analytics.usage('key_alpha', new Date(start), new Date(start + 3 * hour), 'DAY')).toEqual(before);
  });

  it('pages through the request log newest first without gaps or repeats', async () => {
    const expected = events
      .filter((e) => e.apiKeyId === 'key_beta')
      .sort((a, b) => ts(b) - ts(a) || (a.eventId! < b.eventId! ? 1 : a.eventId! > b.eventId! ? -1 : 0))
      .map((e) => e.eventId);
    const seen: string[] = [];
    let after: { timestamp: Date; id: string } | undefined;
    for (let page = 0; page < 100; page++) {
      const result = await analytics.requestLog({ apiKeyId: 'key_beta' }, 37, after);
      seen.push(...result.entries.map((e) => e.entry.id));
      if (!result.hasNextPage) break;
      const last = result.entries.at(-1)!.entry;
      after = { timestamp: last.timestamp, id: last.id };
    }
    expect(seen).toEqual(expected);
  });

  it('filters the request log by error code, status and time range', async () => {
    const from = start + hour;
    const to = start + 2 * hour;
    const notFound = await analytics.requestLog({ errorCode: 'NOT_FOUND', from: new Date(from), to: new Date(to) }, 500);
    expect(notFound.entries.map((e) => e.entry.id).sort()).toEqual(
      events
        .filter((e) => e.errorCodes.includes('NOT_FOUND') && ts(e) >= from && ts(e) < to)
        .map((e) => e.eventId)
        .sort(),
    );
    const limited = await analytics.requestLog({ httpStatus: 429, operationName: 'GetCard' }, 500);
    expect(limited.entries.length).toBe(events.filter((e) => e.httpStatus === 429 && e.operationName === 'GetCard').length);
    const entry = limited.entries[0]!.entry;
    const raw = events.find((e) => e.eventId === entry.id)!;
    expect(entry).toMatchObject({
      requestId: raw.requestId,
      traceId: raw.traceId,
      apiKeyId: raw.apiKeyId,
      userId: raw.userId,
      role: raw.role,
      errorCodes: raw.errorCodes,
      latencyMs: raw.latencyMs,
      subgraphTimings: raw.subgraphTimings,
    });
    expect(entry.timestamp.toISOString()).toBe(raw.timestamp);
  });

  it('finds unnamed operations in the request log by (anonymous), the name topOperations gives them', async () => {
    const [from, to] = [new Date(start), new Date(start + 3 * hour)];
    const anonymous = (await analytics.topOperations(from, to, 100)).filter((o) => o.operationName === anonymousOperation);
    const log = await analytics.requestLog({ operationName: anonymousOperation }, 2_000);
    const expected = events.filter((e) => e.operationName === null);
    expect(expected.length).toBeGreaterThan(0);
    expect(log.entries.map((e) => e.entry.id).sort()).toEqual(expected.map((e) => e.eventId).sort());
    expect(log.entries.every((e) => e.entry.operationName === null)).toBe(true);
    expect(anonymous.reduce((sum, o) => sum + o.requests, 0)).toBe(expected.length);
  });
});
