import { randomUUID } from 'node:crypto';
import { boundOperationName, type RequestEvent, type SubgraphTiming } from '@ghostpay/platform';
import { bucketField, bucketIndexFor, latencyBucketBoundsMs, percentileFromBuckets } from './latency-histogram.ts';
import type { StoreBulkOperation, StoreDb, StoreDocument, StoreFilter } from './store/document-store.ts';

export type Granularity = 'MINUTE' | 'HOUR' | 'DAY';

export interface UsagePoint {
  start: Date;
  requests: number;
  errors: number;
  averageLatencyMs: number;
}

export interface OperationStats {
  operationName: string;
  operationType: string;
  requests: number;
  errors: number;
  errorRate: number;
  averageLatencyMs: number;
}

export interface ErrorRate {
  requests: number;
  errors: number;
  rate: number;
}

export interface LatencyPercentiles {
  operationName: string;
  count: number;
  p50Ms: number | null;
  p95Ms: number | null;
  p99Ms: number | null;
  maxMs: number | null;
}

export interface RequestLogEntry {
  id: string;
  timestamp: Date;
  requestId: string;
  traceId: string | null;
  operationName: string | null;
  operationType: string | null;
  apiKeyId: string | null;
  userId: string | null;
  role: string | null;
  httpStatus: number;
  errorCodes: string[];
  latencyMs: number;
  subgraphTimings: SubgraphTiming[];
}

export interface RequestLogFilter {
  from?: Date;
  to?: Date;
  apiKeyId?: string;
  userId?: string;
  operationName?: string;
  httpStatus?: number;
  errorCode?: string;
  onlyErrors?: boolean;
}

export interface RequestLogPage {
  entries: { cursor: string; entry: RequestLogEntry }[];
  hasNextPage: boolean;
  endCursor: string | null;
}

export interface IngestResult {
  /** Events stored for the first time. */
  stored: number;
  /** Events already stored (a retried batch): not counted twice. */
  duplicates: number;
}

export interface AnalyticsStoreOptions {
  db: StoreDb;
  /** How long request logs are kept (TTL index on `timestamp`). */
  logRetentionDays: number;
  /** Told when the TTL index already exists with another retention (MongoDB needs `collMod` to change it). */
  onWarning?: (message: string) => void;
}

/**
 * Name used for operations sent without a name (or whose name redaction dropped): what `usage`
 * and `performance` store. Logs keep null, so a log filter by this name looks for null.
 */
export const anonymousOperation = '(anonymous)';

/** What a log stores for an operation name a query asks for. */
function storedOperationName(name: string): string | null {
  return name === anonymousOperation ? null : boundOperationName(name);
}
const minuteMs = 60_000;

const minuteOf = (date: Date) => new Date(Math.floor(date.getTime() / minuteMs) * minuteMs);

function periodStart(date: Date, granularity: Granularity): number {
  const ms = date.getTime();
  const size = granularity === 'MINUTE' ? minuteMs : granularity === 'HOUR' ? 60 * minuteMs : 24 * 60 * minuteMs;
  return Math.floor(ms / size) * size;
}

/** An event is an error when the response carried an error code or an HTTP error status. */
export function isErrorEvent(event: Pick<RequestEvent, 'httpStatus' | 'errorCodes'>): boolean {
  return event.errorCodes.length > 0 || event.httpStatus >= 400;
}

function encodeCursor(timestamp: Date, id: string): string {
  return Buffer.from(JSON.stringify([timestamp.getTime(), id])).toString('base64url');
}

/** The position a cursor names, or undefined when it is not one of ours. */
export function decodeCursor(cursor: string): { timestamp: Date; id: string } | undefined {
  try {
    const value = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown;
    if (Array.isArray(value) && Number.isSafeInteger(value[0]) && typeof value[1] === 'string') {
      const timestamp = new Date(value[0] as number);
      // Past ±8.64e15 ms a Date is invalid: compared as NaN by the embedded store and stored as
      // epoch 0 by MongoDB's BSON. Not a position we ever hand out.
      if (!Number.isNaN(timestamp.getTime())) return { timestamp, id: value[1] };
    }
  } catch {
    // fall through
  }
  return undefined;
}

/**
 * Request logs, usage and performance, written once against the `StoreDb` subset so the same
 * code runs on MongoDB and on the embedded store.
 *
 * - `logs`: one document per event, `_id` = the emitter's eventId, TTL on `timestamp`.
 * - `usage`: one document per API key per minute: requests, errors, latency sum (`$inc`).
 * - `performance`: one document per operation per minute: requests, errors, latency sum and max,
 *   and counts in the fixed buckets of `latency-histogram.ts`.
 */
export function createAnalyticsStore(options: AnalyticsStoreOptions) {
  const { db, logRetentionDays } = options;
  const logs = db.collection('logs');
  const usage = db.collection('usage');
  const performance = db.collection('performance');

  return {
    /** Creates the indexes the queries below use. Idempotent. */
    async ensureIndexes(): Promise<void> {
      try {
        await logs.createIndex({ timestamp: 1 }, { name: 'logs_ttl', expireAfterSeconds: Math.round(logRetentionDays * 86_400) });
      } catch (error) {
        options.onWarning?.(`logs TTL index not updated (${(error as Error).message}); change retention with collMod on logs_ttl`);
      }
      await Promise.all([
        logs.createIndex({ apiKeyId: 1, timestamp: -1 }, { name: 'logs_api_key_time' }),
        logs.createIndex({ userId: 1, timestamp: -1 }, { name: 'logs_user_time' }),
        logs.createIndex({ operationName: 1, timestamp: -1 }, { name: 'logs_operation_time' }),
        usage.createIndex({ apiKeyId: 1, minute: 1 }, { name: 'usage_api_key_minute' }),
        performance.createIndex({ minute: 1 }, { name: 'performance_minute' }),
        performance.createIndex({ operationName: 1, minute: 1 }, { name: 'performance_operation_minute' }),
      ]);
    },

    /**
     * Stores a batch. The log insert is an upsert keyed by eventId, and only events it inserted
     * are added to `usage` and `performance`, so a retried batch is never counted twice.
     * Aggregates are pre-summed per document within the batch: one `$inc` per key-minute.
     */
    async ingest(events: RequestEvent[]): Promise<IngestResult> {
      if (events.length === 0) return { stored: 0, duplicates: 0 };
      const docs = events.map((event) => ({
        _id: event.eventId ?? randomUUID(),
        timestamp: new Date(event.timestamp),
        requestId: event.requestId,
        traceId: event.traceId,
        // Ingest has redacted it (which cuts it too); cut here as well for any other caller.
        operationName: event.operationName === null ? null : boundOperationName(event.operationName),
        operationType: event.operationType,
        apiKeyId: event.apiKeyId,
        userId: event.userId,
        role: event.role,
        httpStatus: event.httpStatus,
        errorCodes: event.errorCodes,
        latencyMs: event.latencyMs,
        subgraphTimings: event.subgraphTimings,
        isError: isErrorEvent(event),
      }));
      const logOps: StoreBulkOperation[] = docs.map(({ _id, ...fields }) => ({
        updateOne: { filter: { _id }, update: { $setOnInsert: fields }, upsert: true },
      }));
      let upsertedIds: { [index: number]: unknown };
      let failure: unknown;
      try {
        upsertedIds = (await logs.bulkWrite(logOps, { ordered: false })).upsertedIds;
      } catch (error) {
        // Unordered: what did get inserted must still be counted, then the caller retries the rest.
        failure = error;
        upsertedIds = (error as { result?: { upsertedIds?: { [index: number]: unknown } } }).result?.upsertedIds ?? {};
      }
      const inserted = Object.keys(upsertedIds).map((index) => docs[Number(index)]!);

      const usageByKey = new Map<string, { apiKeyId: string; minute: Date; requests: number; errors: number; latencyMsTotal: number }>();
      const perfByKey = new Map<
        string,
        {
          operationName: string;
          operationType: string;
          minute: Date;
          requests: number;
          errors: number;
          latencyMsTotal: number;
          latencyMsMax: number;
          buckets: Map<number, number>;
        }
      >();
      for (const doc of inserted) {
        const minute = minuteOf(doc.timestamp);
        const errors = doc.isError ? 1 : 0;
        if (doc.apiKeyId) {
          const key = `${doc.apiKeyId}|${minute.getTime()}`;
          const u = usageByKey.get(key) ?? { apiKeyId: doc.apiKeyId, minute, requests: 0, errors: 0, latencyMsTotal: 0 };
          u.requests++;
          u.errors += errors;
          u.latencyMsTotal += doc.latencyMs;
          usageByKey.set(key, u);
        }
        const operationName = doc.operationName ?? anonymousOperation;
        const operationType = doc.operationType ?? 'unknown';
        const key = `${operationType}|${operationName}|${minute.getTime()}`;
        const p = perfByKey.get(key) ?? {
          operationName,
          operationType,
          minute,
          requests: 0,
          errors: 0,
          latencyMsTotal: 0,
          latencyMsMax: 0,
          buckets: new Map<number, number>(),
        };
        p.requests++;
        p.errors += errors;
        p.latencyMsTotal += doc.latencyMs;
        p.latencyMsMax = Math.max(p.latencyMsMax, doc.latencyMs);
        const bucket = bucketIndexFor(doc.latencyMs);
        p.buckets.set(bucket, (p.buckets.get(bucket) ?? 0) + 1);
        perfByKey.set(key, p);
      }

      const usageOps: StoreBulkOperation[] = [...usageByKey].map(([id, u]) => ({
        updateOne: {
          filter: { _id: id },
          update: {
            $setOnInsert: { apiKeyId: u.apiKeyId, minute: u.minute },
            $inc: { requests: u.requests, errors: u.errors, latencyMsTotal: u.latencyMsTotal },
          },
          upsert: true,
        },
      }));
      const perfOps: StoreBulkOperation[] = [...perfByKey].map(([id, p]) => {
        const inc: Record<string, number> = { requests: p.requests, errors: p.errors, latencyMsTotal: p.latencyMsTotal };
        for (const [bucket, count] of p.buckets) inc[`buckets.${bucketField(bucket)}`] = count;
        return {
          updateOne: {
            filter: { _id: id },
            update: {
              $setOnInsert: { operationName: p.operationName, operationType: p.operationType, minute: p.minute },
              $inc: inc,
              $max: { latencyMsMax: p.latencyMsMax },
            },
            upsert: true,
          },
        };
      });
      await Promise.all([
        usageOps.length ? usage.bulkWrite(usageOps, { ordered: false }) : undefined,
        perfOps.length ? performance.bulkWrite(perfOps, { ordered: false }) : undefined,
      ]);
      if (failure) throw failure;
      return { stored: inserted.length, duplicates: events.length - inserted.length };
    },

    /** Requests per period for one API key; only periods with traffic are returned, oldest first. */
    async usage(apiKeyId: string, from: Date, to: Date, granularity: Granularity): Promise<UsagePoint[]> {
      const docs = await usage
        .find({ apiKeyId, minute: { $gte: from, $lt: to } })
        .sort({ minute: 1 })
        .toArray();
      const periods = new Map<number, { requests: number; errors: number; latencyMsTotal: number }>();
      for (const doc of docs) {
        const start = periodStart(doc.minute as Date, granularity);
        const p = periods.get(start) ?? { requests: 0, errors: 0, latencyMsTotal: 0 };
        p.requests += Number(doc.requests ?? 0);
        p.errors += Number(doc.errors ?? 0);
        p.latencyMsTotal += Number(doc.latencyMsTotal ?? 0);
        periods.set(start, p);
      }
      return [...periods].map(([start, p]) => ({
        start: new Date(start),
        requests: p.requests,
        errors: p.errors,
        averageLatencyMs: p.requests ? p.latencyMsTotal / p.requests : 0,
      }));
    },

    /** The busiest operations in the range, most requests first. */
    async topOperations(from: Date, to: Date, limit: number): Promise<OperationStats[]> {
      const docs = await performance.find({ minute: { $gte: from, $lt: to } }).toArray();
      const byOperation = new Map<
        string,
        { operationName: string; operationType: string; requests: number; errors: number; latencyMsTotal: number }
      >();
      for (const doc of docs) {
        const key = `${String(doc.operationType)}|${String(doc.operationName)}`;
        const o = byOperation.get(key) ?? {
          operationName: String(doc.operationName),
          operationType: String(doc.operationType),
          requests: 0,
          errors: 0,
          latencyMsTotal: 0,
        };
        o.requests += Number(doc.requests ?? 0);
        o.errors += Number(doc.errors ?? 0);
        o.latencyMsTotal += Number(doc.latencyMsTotal ?? 0);
        byOperation.set(key, o);
      }
      return [...byOperation.values()]
        .sort((a, b) => b.requests - a.requests || a.operationName.localeCompare(b.operationName))
        .slice(0, limit)
        .map((o) => ({
          operationName: o.operationName,
          operationType: o.operationType,
          requests: o.requests,
          errors: o.errors,
          errorRate: o.requests ? o.errors / o.requests : 0,
          averageLatencyMs: o.requests ? o.latencyMsTotal / o.requests : 0,
        }));
    },

    async errorRate(from: Date, to: Date): Promise<ErrorRate> {
      const docs = await performance.find({ minute: { $gte: from, $lt: to } }).toArray();
      let requests = 0;
      let errors = 0;
      for (const doc of docs) {
        requests += Number(doc.requests ?? 0);
        errors += Number(doc.errors ?? 0);
      }
      return { requests, errors, rate: requests ? errors / requests : 0 };
    },

    /**
     * p50/p95/p99 of one operation (every operation type under that name) from summed buckets.
     * The name is cut as stored (`boundOperationName`), so a name over 200 characters is found.
     */
    async latency(name: string, from: Date, to: Date): Promise<LatencyPercentiles> {
      const operationName = boundOperationName(name);
      const docs = await performance.find({ operationName, minute: { $gte: from, $lt: to } }).toArray();
      const counts = new Array<number>(latencyBucketBoundsMs.length + 1).fill(0);
      let maxMs = 0;
      for (const doc of docs) {
        const buckets = (doc.buckets ?? {}) as Record<string, number>;
        for (let i = 0; i < counts.length; i++) counts[i]! += Number(buckets[bucketField(i)] ?? 0);
        maxMs = Math.max(maxMs, Number(doc.latencyMsMax ?? 0));
      }
      const count = counts.reduce((a, b) => a + b, 0);
      const pct = (q: number) => percentileFromBuckets(counts, q, maxMs) ?? null;
      return { operationName, count, p50Ms: pct(0.5), p95Ms: pct(0.95), p99Ms: pct(0.99), maxMs: count ? maxMs : null };
    },

    /** Newest first; `after` is an opaque cursor from a previous page. */
    async requestLog(filter: RequestLogFilter, first: number, after?: { timestamp: Date; id: string }): Promise<RequestLogPage> {
      const conditions: StoreFilter[] = [];
      if (filter.from || filter.to) {
        conditions.push({ timestamp: { ...(filter.from ? { $gte: filter.from } : {}), ...(filter.to ? { $lt: filter.to } : {}) } });
      }
      if (filter.apiKeyId) conditions.push({ apiKeyId: filter.apiKeyId });
      if (filter.userId) conditions.push({ userId: filter.userId });
      if (filter.operationName) conditions.push({ operationName: storedOperationName(filter.operationName) });
      if (filter.httpStatus !== undefined) conditions.push({ httpStatus: filter.httpStatus });
      if (filter.errorCode) conditions.push({ errorCodes: filter.errorCode });
      if (filter.onlyErrors) conditions.push({ isError: true });
      if (after) {
        conditions.push({ $or: [{ timestamp: { $lt: after.timestamp } }, { timestamp: after.timestamp, _id: { $lt: after.id } }] });
      }
      const query: StoreFilter = conditions.length === 0 ? {} : conditions.length === 1 ? conditions[0]! : { $and: conditions };
      const docs = await logs
        .find(query)
        .sort({ timestamp: -1, _id: -1 })
        .limit(first + 1)
        .toArray();
      const page = docs.slice(0, first).map((doc) => {
        const entry = toEntry(doc);
        return { cursor: encodeCursor(entry.timestamp, entry.id), entry };
      });
      return { entries: page, hasNextPage: docs.length > first, endCursor: page.at(-1)?.cursor ?? null };
    },
  };
}

export type AnalyticsStore = ReturnType<typeof createAnalyticsStore>;

function toEntry(doc: StoreDocument): RequestLogEntry {
  return {
    id: String(doc._id),
    timestamp: doc.timestamp as Date,
    requestId: String(doc.requestId),
    traceId: (doc.traceId as string | null) ?? null,
    operationName: (doc.operationName as string | null) ?? null,
    operationType: (doc.operationType as string | null) ?? null,
    apiKeyId: (doc.apiKeyId as string | null) ?? null,
    userId: (doc.userId as string | null) ?? null,
    role: (doc.role as string | null) ?? null,
    httpStatus: Number(doc.httpStatus),
    errorCodes: (doc.errorCodes as string[] | undefined) ?? [],
    latencyMs: Number(doc.latencyMs),
    subgraphTimings: (doc.subgraphTimings as SubgraphTiming[] | undefined) ?? [],
  };
}
