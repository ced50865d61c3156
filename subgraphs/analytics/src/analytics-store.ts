import { randomBytes, randomUUID } from 'node:crypto';
import { boundOperationName, type RequestEvent, type SubgraphTiming } from '@ghostpay/platform';
import { bucketField, bucketIndexFor, latencyBucketBoundsMs, percentileFromBuckets } from './latency-histogram.ts';
import {
  duplicateKeyErrorCode,
  type StoreBulkOperation,
  type StoreCollection,
  type StoreDb,
  type StoreDocument,
  type StoreFilter,
  writeErrorsOf,
} from './store/document-store.ts';

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
  /**
   * How long the `usage` and `performance` aggregates are kept, in days from the start of their
   * minute: `expireAggregates` deletes older ones. At least a day longer than `logRetentionDays`
   * (a minute's aggregates outlive its logs, which recovery counts from).
   * @default `aggregateRetentionDaysFor(logRetentionDays)`: 93 days, or a day more than the logs' when that is longer
   */
  aggregateRetentionDays?: number;
  /**
   * Told when the TTL index already exists with another retention (MongoDB needs `collMod` to
   * change it), and when bookkeeping after a batch's counts (or a recovery) fails: the batch is
   * then finished by a later recovery.
   */
  onWarning?: (message: string) => void;
  /**
   * A batch's lease: the ingest that writes a batch owns it, and stops writing for it, for the
   * first half of this; only after all of it may a recovery (`recoverPending`, any process) claim
   * the batch, for the same time again. The second half is the margin for a write sent before
   * the owner's deadline to be applied: it must be longer than `writeBoundMs`. @default 60000
   */
  batchLeaseMs?: number;
  /**
   * The store's `DocumentStore.writeBoundMs`: the longest a write takes to be applied after being
   * sent (or to fail having applied nothing). Refused when it does not fit in the lease's margin
   * (half of `batchLeaseMs`), since a write applied after a recovery took its batch over can count
   * it twice or not at all. @default 0 (not checked)
   */
  writeBoundMs?: number;
  /** The clock (leases), for tests. @default Date.now */
  now?: () => number;
}

export interface RecoveryResult {
  /** Pending batches whose lease had expired, finished by this pass. */
  recovered: number;
  /** Batches of this process whose counting had failed, counted by this pass within their lease. */
  completed: number;
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

/** Aggregate documents an expiry pass deletes per write, and writes per collection per pass. */
const aggregateExpiryBatch = 1_000;
const aggregateExpiryRounds = 100;

/** The batch lease (`AnalyticsStoreOptions.batchLeaseMs`) unless a caller sets another. */
export const defaultBatchLeaseMs = 60_000;

/**
 * How long aggregates are kept unless configured: 93 days, the longest range a query may ask for
 * (`usage`, `topOperations`, `errorRate`, `latency`), so such a range ending now is answered whole.
 */
export const defaultAggregateRetentionDays = 93;

/** How much longer than the request logs the aggregates must be kept, in days. */
export const aggregateRetentionMarginDays = 1;

/**
 * The aggregates' retention: `configured` when given, else the default, or a day more than the
 * logs' retention when that is longer (a log retention of 100 days keeps aggregates 101).
 */
export function aggregateRetentionDaysFor(logRetentionDays: number, configured?: number): number {
  return configured ?? Math.max(defaultAggregateRetentionDays, logRetentionDays + aggregateRetentionMarginDays);
}

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

/** What a request log holds that the aggregates are computed from (a log as written or as read back). */
interface CountedEvent {
  timestamp: Date;
  apiKeyId: string | null;
  operationName: string | null;
  operationType: string | null;
  latencyMs: number;
  isError: boolean;
}

interface UsageDelta {
  apiKeyId: string;
  minute: Date;
  requests: number;
  errors: number;
  latencyMsTotal: number;
}

interface PerformanceDelta {
  operationName: string;
  operationType: string;
  minute: Date;
  requests: number;
  errors: number;
  latencyMsTotal: number;
  latencyMsMax: number;
  buckets: Map<number, number>;
}

/** What a batch needs to be counted (again): its deadline, its deltas, and the documents its markers may be on. */
interface UncountedBatch {
  deadline: number;
  deltas: AggregateDeltas;
  targets: BatchTargets;
}

/** A batch's contribution to the aggregates: one delta per `usage` and `performance` document (`_id` → delta). */
interface AggregateDeltas {
  usage: Map<string, UsageDelta>;
  performance: Map<string, PerformanceDelta>;
}

/** The aggregate documents a batch may touch, by collection: where its markers are removed. */
interface BatchTargets {
  usage: string[];
  performance: string[];
}

/**
 * The minutes a batch's events fall in, as `[from, to)` runs of whole minutes: where a recovery
 * looks for the batch's logs (through the `timestamp` index), so the batch document needs no list
 * of event ids. An emitter's batch usually spans one or two minutes: one run.
 */
function minuteRuns(events: Iterable<{ timestamp: Date }>): { from: Date; to: Date }[] {
  const minutes = [...new Set([...events].map((e) => minuteOf(e.timestamp).getTime()))].sort((a, b) => a - b);
  const runs: { from: Date; to: Date }[] = [];
  for (const minute of minutes) {
    const last = runs.at(-1);
    if (last && last.to.getTime() === minute) last.to = new Date(minute + minuteMs);
    else runs.push({ from: new Date(minute), to: new Date(minute + minuteMs) });
  }
  return runs;
}

const usageDocumentId = (apiKeyId: string, minute: Date) => `${apiKeyId}|${minute.getTime()}`;
const performanceDocumentId = (operationType: string, operationName: string, minute: Date) =>
  `${operationType}|${operationName}|${minute.getTime()}`;

/**
 * Sums events into one delta per aggregate document. The ingest that wrote a batch and a later
 * recovery (from the logs read back) both count through here, so both compute the same deltas.
 * Events of a minute at or before `expiringBy` are left out: their aggregates may be deleted by
 * `expireAggregates` before a write sent now is applied, and counting into them would re-create
 * a partial document of an expired minute.
 */
function aggregateDeltas(events: Iterable<CountedEvent>, expiringBy: number): AggregateDeltas {
  const usage = new Map<string, UsageDelta>();
  const performance = new Map<string, PerformanceDelta>();
  for (const event of events) {
    const minute = minuteOf(event.timestamp);
    if (minute.getTime() <= expiringBy) continue;
    const errors = event.isError ? 1 : 0;
    if (event.apiKeyId) {
      const id = usageDocumentId(event.apiKeyId, minute);
      const u = usage.get(id) ?? { apiKeyId: event.apiKeyId, minute, requests: 0, errors: 0, latencyMsTotal: 0 };
      u.requests++;
      u.errors += errors;
      u.latencyMsTotal += event.latencyMs;
      usage.set(id, u);
    }
    const operationName = event.operationName ?? anonymousOperation;
    const operationType = event.operationType ?? 'unknown';
    const id = performanceDocumentId(operationType, operationName, minute);
    const p = performance.get(id) ?? {
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
    p.latencyMsTotal += event.latencyMs;
    p.latencyMsMax = Math.max(p.latencyMsMax, event.latencyMs);
    const bucket = bucketIndexFor(event.latencyMs);
    p.buckets.set(bucket, (p.buckets.get(bucket) ?? 0) + 1);
    performance.set(id, p);
  }
  return { usage, performance };
}

/** A request log read back, as counted. */
function countedEvent(doc: StoreDocument): CountedEvent {
  return {
    timestamp: doc.timestamp as Date,
    apiKeyId: (doc.apiKeyId as string | null | undefined) ?? null,
    operationName: (doc.operationName as string | null | undefined) ?? null,
    operationType: (doc.operationType as string | null | undefined) ?? null,
    latencyMs: Number(doc.latencyMs),
    isError: doc.isError === true,
  };
}

/**
 * The field of an aggregate document that lists the batches applied to it while they are
 * pending: `appliedBatches.<batch id>: 1`. Each marker is removed once its batch is finished, so
 * a document holds only the markers of batches still pending (an empty object otherwise). The
 * queries read named fields only and never see it.
 */
const appliedField = 'appliedBatches';

/** A batch id: also a field name under `appliedBatches`, so no dots and no leading `$` or digit. */
const newBatchId = () => `b${randomBytes(12).toString('hex')}`;

/**
 * One conditional upsert per aggregate document: it adds the batch's delta and its marker only
 * when the document does not carry the marker yet, so applying a batch twice to a document (a
 * recovery after a crash between documents, or between the counts and the bookkeeping) adds it
 * once. When the document exists and carries the marker, the filter fails and the upsert's insert
 * of that `_id` is a duplicate key (11000): already applied.
 */
function conditionalAggregateOps(
  batch: string,
  deltas: AggregateDeltas,
): { usage: StoreBulkOperation[]; performance: StoreBulkOperation[] } {
  const marker = `${appliedField}.${batch}`;
  const usage: StoreBulkOperation[] = [...deltas.usage].map(([id, u]) => ({
    updateOne: {
      filter: { _id: id, [marker]: { $exists: false } },
      update: {
        $setOnInsert: { apiKeyId: u.apiKeyId, minute: u.minute },
        $inc: { requests: u.requests, errors: u.errors, latencyMsTotal: u.latencyMsTotal },
        $set: { [marker]: 1 },
      },
      upsert: true,
    },
  }));
  const performance: StoreBulkOperation[] = [...deltas.performance].map(([id, p]) => {
    const inc: Record<string, number> = { requests: p.requests, errors: p.errors, latencyMsTotal: p.latencyMsTotal };
    for (const [bucket, count] of p.buckets) inc[`buckets.${bucketField(bucket)}`] = count;
    return {
      updateOne: {
        filter: { _id: id, [marker]: { $exists: false } },
        update: {
          $setOnInsert: { operationName: p.operationName, operationType: p.operationType, minute: p.minute },
          $inc: inc,
          $max: { latencyMsMax: p.latencyMsMax },
          $set: { [marker]: 1 },
        },
        upsert: true,
      },
    };
  });
  return { usage, performance };
}

/**
 * Runs conditional upserts. A duplicate key means the document exists and either carries the
 * marker (applied before) or was inserted by a concurrent upsert between this one's match and
 * its insert: those operations are tried once more, now that the document exists; a duplicate
 * key again can only mean the marker is there.
 */
async function writeConditionally(collection: StoreCollection, operations: StoreBulkOperation[], beforeSend: () => void): Promise<void> {
  let pending = operations;
  for (let attempt = 0; pending.length > 0; attempt++) {
    // Each send, the second one too, only within the lease: a write sent later could be applied
    // after a recovery removed this batch's markers, and count it twice.
    beforeSend();
    try {
      await collection.bulkWrite(pending, { ordered: false });
      return;
    } catch (error) {
      const failed = writeErrorsOf(error);
      if (failed.length === 0 || failed.some((e) => e.code !== duplicateKeyErrorCode)) throw error;
      if (attempt > 0) return;
      const retry = pending;
      pending = failed.map((e) => retry[e.index]!);
    }
  }
}

/**
 * Thrown by an ingest whose events were found stored by another batch that is not counted (its
 * counting failed, e.g. a full embedded store, or it is still in flight): answered 503 so the
 * emitter retries, never 200 with those events as duplicates. The retry answers 200 once that
 * batch is counted (by this process's next ingest or a recovery).
 */
export class BatchNotCountedError extends Error {
  constructor(pending: string[]) {
    super(`analytics: events of this batch are stored but not counted yet (pending batch ${pending.join(', ')}); retry`);
    this.name = 'BatchNotCountedError';
  }
}

/** Thrown when the lease a step needs has run out: the batch is left to a recovery. */
class LeaseExpiredError extends Error {
  constructor(batch: string) {
    super(`analytics batch ${batch}: lease expired; left to recovery`);
  }
}

/**
 * Request logs, usage and performance, written once against the `StoreDb` subset so the same
 * code runs on MongoDB and on the embedded store.
 *
 * - `logs`: one document per event, `_id` = the emitter's eventId, TTL on `timestamp`.
 * - `usage`: one document per API key per minute: requests, errors, latency sum (`$inc`).
 * - `performance`: one document per operation per minute: requests, errors, latency sum and max,
 *   and counts in the fixed buckets of `latency-histogram.ts`.
 * - both kept `aggregateRetentionDays`, deleted by `expireAggregates`.
 */
export function createAnalyticsStore(options: AnalyticsStoreOptions) {
  const { db, logRetentionDays } = options;
  const leaseMs = options.batchLeaseMs ?? defaultBatchLeaseMs;
  const aggregateRetentionDays = aggregateRetentionDaysFor(logRetentionDays, options.aggregateRetentionDays);
  if (!(aggregateRetentionDays >= logRetentionDays + aggregateRetentionMarginDays)) {
    throw new Error(
      `analytics: aggregates kept ${aggregateRetentionDays} days, not at least ${aggregateRetentionMarginDays} day longer than the request logs (${logRetentionDays} days): recovery counts a batch from its logs`,
    );
  }
  const aggregateRetentionMs = aggregateRetentionDays * 86_400_000;
  const writeBoundMs = options.writeBoundMs ?? 0;
  if (writeBoundMs >= leaseMs / 2) {
    throw new Error(
      `analytics: the store's writes are bounded by ${writeBoundMs} ms, not within the batch lease's margin (${leaseMs / 2} ms, half of batchLeaseMs): lower the store's timeouts`,
    );
  }
  const now = options.now ?? Date.now;
  const warn = (message: string) => options.onWarning?.(message);
  const logs = db.collection('logs');
  const usage = db.collection('usage');
  const performance = db.collection('performance');
  /** One document per pending batch (see `ingest`): deleted once the batch is finished. */
  const batches = db.collection('batches');

  /** Batches this instance is working on (writing, counting, finishing, recovering): never claimed by its own sweep. */
  const owned = new Set<string>();
  /**
   * Own batches whose logs are written but whose counting failed: counted again by the next ingest
   * or sweep, within their deadline. Each is in `owned` too, for as long as it is here.
   */
  const uncounted = new Map<string, UncountedBatch>();
  /** Own batches whose counts are applied, not yet marked applied (their finishing is queued). */
  const countedHere = new Set<string>();

  /**
   * The batches, other than `except`, that stored these logs and are not counted: pending, not
   * marked applied, and not counted by this instance. A log without a batch id predates it.
   */
  async function uncountedBatchesOf(ids: unknown[], except: string): Promise<string[]> {
    const found = await logs.find({ _id: { $in: ids } }).toArray();
    const of = [...new Set(found.map((doc) => doc.batch))].filter(
      (b): b is string => typeof b === 'string' && b !== except && !countedHere.has(b),
    );
    if (of.length === 0) return [];
    const pending = await batches.find({ _id: { $in: of } }).toArray();
    return pending.filter((doc) => doc.applied !== true && !countedHere.has(String(doc._id))).map((doc) => String(doc._id));
  }

  /**
   * The last minute a batch may not count into when its writes start at `since`: they are applied
   * within the lease, and `expireAggregates` deletes a minute's documents only once the minute is
   * older than the retention, so a minute after this one cannot be deleted (and then re-created
   * with part of its counts) while they are under way.
   */
  const expiringBy = (since: number) => since + leaseMs - aggregateRetentionMs;

  const checkLease = (batch: string, deadline: number) => {
    if (now() >= deadline) throw new LeaseExpiredError(batch);
  };

  /**
   * Applies a batch's deltas to `usage` and `performance`, each document at most once. Waits for
   * both collections' writes to end, even when one fails, so nothing of this batch is still being
   * applied when its markers are removed.
   */
  async function applyDeltas(batch: string, deltas: AggregateDeltas, deadline: number): Promise<void> {
    checkLease(batch, deadline);
    const ops = conditionalAggregateOps(batch, deltas);
    const inLease = () => checkLease(batch, deadline);
    const results = await Promise.allSettled([
      writeConditionally(usage, ops.usage, inLease),
      writeConditionally(performance, ops.performance, inLease),
    ]);
    const failed = results.find((r) => r.status === 'rejected');
    if (failed) throw failed.reason;
  }

  /**
   * Counts a batch this instance owns (its ingest's, its recovery's claim, or one kept from an
   * earlier attempt) or keeps it to count again: one rule for all three.
   * - counted: resolves; the caller finishes the batch;
   * - failed for another reason than the lease: the batch is kept (in `uncounted` with this
   *   attempt's deadline and deltas, and still owned, so this instance's recovery never claims it
   *   while it may count it) and counted again at the next ingest or pass; rejects;
   * - the lease ran out (the deadline, part-way through included): the batch is forgotten (out of
   *   `uncounted` and `owned`, whatever an earlier attempt left), so a recovery, this instance's
   *   too, claims it once its lease is over; the markers keep what was applied from counting
   *   twice; rejects.
   */
  async function countOrKeep(batch: string, entry: UncountedBatch): Promise<void> {
    try {
      await applyDeltas(batch, entry.deltas, entry.deadline);
    } catch (error) {
      if (error instanceof LeaseExpiredError) {
        uncounted.delete(batch);
        owned.delete(batch);
      } else {
        uncounted.set(batch, entry);
      }
      throw error;
    }
  }

  /** Removes batches' markers from the aggregate documents they may have touched: one update per document. */
  async function removeMarkers(items: { batch: string; targets: BatchTargets }[]): Promise<void> {
    const byCollection = { usage: new Map<string, Record<string, ''>>(), performance: new Map<string, Record<string, ''>>() };
    for (const { batch, targets } of items) {
      for (const name of ['usage', 'performance'] as const) {
        for (const id of targets[name]) {
          const fields = byCollection[name].get(id) ?? {};
          fields[`${appliedField}.${batch}`] = '';
          byCollection[name].set(id, fields);
        }
      }
    }
    const unset = (fields: Map<string, Record<string, ''>>): StoreBulkOperation[] =>
      [...fields].map(([id, $unset]) => ({ updateOne: { filter: { _id: id }, update: { $unset } } }));
    const results = await Promise.allSettled([
      byCollection.usage.size ? usage.bulkWrite(unset(byCollection.usage), { ordered: false }) : undefined,
      byCollection.performance.size ? performance.bulkWrite(unset(byCollection.performance), { ordered: false }) : undefined,
    ]);
    const failed = results.find((r) => r.status === 'rejected');
    if (failed) throw failed.reason;
  }

  const markApplied = (ids: string[]) =>
    batches.bulkWrite(
      ids.map((id) => ({ updateOne: { filter: { _id: id }, update: { $set: { applied: true } } } })),
      { ordered: false },
    );
  const deleteBatches = (ids: string[]) =>
    batches.bulkWrite(
      ids.map((id) => ({ deleteOne: { filter: { _id: id } } })),
      { ordered: false },
    );

  /**
   * Finishes counted batches of this instance off the ingest's path, several at a time: marks
   * them applied (from then on nothing re-applies them), removes their markers, deletes their
   * batch documents. Each step is sent only within the batch's lease; a batch whose step fails or
   * whose lease runs out stays pending and a recovery finishes it.
   */
  const finishQueue: { batch: string; deadline: number; targets: BatchTargets; counted: boolean }[] = [];
  let finishing: Promise<void> | undefined;

  function finishLater(item: (typeof finishQueue)[number]): void {
    if (item.counted) countedHere.add(item.batch);
    finishQueue.push(item);
    finishing ??= (async () => {
      try {
        while (finishQueue.length > 0) await finish(finishQueue.splice(0));
      } finally {
        finishing = undefined;
      }
    })();
  }

  async function finish(items: typeof finishQueue): Promise<void> {
    try {
      const live = () => items.filter((item) => now() < item.deadline);
      // Batches that added nothing (every event was a duplicate) carry no markers.
      const counted = live().filter((item) => item.counted);
      if (counted.length > 0) await markApplied(counted.map((item) => item.batch));
      const applied = new Set(counted.map((item) => item.batch));
      const unmarked = live().filter((item) => applied.has(item.batch));
      if (unmarked.length > 0) await removeMarkers(unmarked);
      const done = new Set(unmarked.map((item) => item.batch));
      const removable = live().filter((item) => !item.counted || done.has(item.batch));
      if (removable.length > 0) await deleteBatches(removable.map((item) => item.batch));
    } catch (error) {
      warn(`analytics: finishing ${items.length} counted batch(es) failed (${(error as Error).message}); a recovery finishes them`);
    } finally {
      for (const item of items) {
        owned.delete(item.batch);
        countedHere.delete(item.batch);
      }
    }
  }

  /** Counts again, within their lease, own batches whose counting failed. */
  async function countUncounted(): Promise<number> {
    let completed = 0;
    const entries = [...uncounted];
    uncounted.clear();
    let firstError: unknown;
    for (const [batch, entry] of entries) {
      if (now() >= entry.deadline) {
        // Past the owner's deadline: a recovery claims it once the lease has expired.
        owned.delete(batch);
        continue;
      }
      try {
        await countOrKeep(batch, entry);
      } catch (error) {
        firstError ??= error;
        continue;
      }
      completed++;
      finishLater({ batch, deadline: entry.deadline, targets: entry.targets, counted: true });
    }
    if (firstError) throw firstError;
    return completed;
  }

  /**
   * Claims a pending batch whose lease has expired (compare-and-set on `leaseUntil`, so one
   * claimant wins) and finishes it: counts it from its logs unless it is marked applied (each
   * aggregate document at most once, by marker), marks it applied, removes its markers, deletes
   * it. Returns false when another claimant got it first.
   */
  async function recoverBatch(pending: StoreDocument): Promise<boolean> {
    const batch = String(pending._id);
    const claimedAt = now();
    const claim = await batches.bulkWrite(
      [
        {
          updateOne: {
            filter: { _id: batch, leaseUntil: pending.leaseUntil },
            update: { $set: { leaseUntil: new Date(claimedAt + leaseMs) } },
          },
        },
      ],
      { ordered: false },
    );
    if (claim.matchedCount !== 1) return false;
    const deadline = claimedAt + leaseMs / 2;
    const targets: BatchTargets = {
      usage: (pending.usage as string[] | undefined) ?? [],
      performance: (pending.performance as string[] | undefined) ?? [],
    };
    owned.add(batch);
    try {
      if (pending.applied !== true) {
        // The logs this batch inserted (not the events it found stored by another batch).
        const runs = (pending.minutes as { from: Date; to: Date }[] | undefined) ?? [];
        const found =
          runs.length === 0
            ? []
            : await logs.find({ batch, $or: runs.map(({ from, to }) => ({ timestamp: { $gte: from, $lt: to } })) }).toArray();
        const deltas = aggregateDeltas(found.map(countedEvent), expiringBy(claimedAt));
        if (deltas.usage.size + deltas.performance.size > 0) {
          // As for an ingest's failed counting: kept, this claimant counts it again at its next
          // ingest or pass within the claim (an emitter's retry waits on it), not a lease later.
          await countOrKeep(batch, { deadline, deltas, targets });
          checkLease(batch, deadline);
          await markApplied([batch]);
        }
      }
      // Markers can be there even when no log is left (counted, then the logs expired).
      checkLease(batch, deadline);
      await removeMarkers([{ batch, targets }]);
      checkLease(batch, deadline);
      await deleteBatches([batch]);
      return true;
    } finally {
      // Owned for as long as it is kept to be counted again (`countOrKeep`).
      if (!uncounted.has(batch)) owned.delete(batch);
    }
  }

  let recovering: Promise<RecoveryResult> | undefined;

  async function recoveryPass(): Promise<RecoveryResult> {
    let firstError: unknown;
    let completed = 0;
    if (uncounted.size > 0) {
      try {
        completed = await countUncounted();
      } catch (error) {
        firstError = error;
      }
    }
    let recovered = 0;
    const due = await batches
      .find({ leaseUntil: { $lte: new Date(now()) } })
      .sort({ leaseUntil: 1 })
      .limit(1_000)
      .toArray();
    for (const pending of due) {
      if (owned.has(String(pending._id))) continue;
      try {
        if (await recoverBatch(pending)) recovered++;
      } catch (error) {
        firstError ??= error;
      }
    }
    if (firstError) throw firstError;
    return { recovered, completed };
  }

  /** Runs a recovery pass for a caller that must not fail because of it (an ingest, the timer). */
  async function recoverQuietly(): Promise<void> {
    try {
      await store.recoverPending();
    } catch (error) {
      warn(`analytics: recovering pending batches failed (${(error as Error).message}); tried again later`);
    }
  }

  let expiring: Promise<number> | undefined;

  /**
   * Deletes the `usage` and `performance` documents of minutes older than the retention, at most
   * `aggregateExpiryBatch` × `aggregateExpiryRounds` per collection per pass (the next pass goes
   * on). Each deletion is conditional on the minute still being that old, and counting never
   * writes into a minute this close to its expiry (`expiringBy`), so a deletion and an ingest
   * counting into the same document cannot interleave.
   */
  async function expirePass(): Promise<number> {
    const cutoff = new Date(now() - aggregateRetentionMs);
    let removed = 0;
    for (const collection of [usage, performance]) {
      for (let round = 0; round < aggregateExpiryRounds; round++) {
        const old = await collection
          .find({ minute: { $lt: cutoff } })
          .limit(aggregateExpiryBatch)
          .toArray();
        if (old.length === 0) break;
        const result = await collection.bulkWrite(
          old.map((doc) => ({ deleteOne: { filter: { _id: doc._id, minute: { $lt: cutoff } } } })),
          { ordered: false },
        );
        removed += result.deletedCount;
        if (old.length < aggregateExpiryBatch) break;
      }
    }
    return removed;
  }

  const store = {
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
        batches.createIndex({ leaseUntil: 1 }, { name: 'batches_lease' }),
      ]);
      // What `expireAggregates` looks for (performance_minute serves it on performance). Added
      // after the others, on a `usage` that may be large: a build that outlasts MONGODB_MAX_TIME_MS
      // must not stop the service starting. Expiry scans `usage` until it exists.
      try {
        await usage.createIndex({ minute: 1 }, { name: 'usage_minute' });
      } catch (error) {
        warn(`usage_minute index not built (${(error as Error).message}); aggregate expiry scans usage until it is: create it by hand`);
      }
    },

    /**
     * Stores a batch and counts each event it stored for the first time exactly once, across
     * retries, failed writes and crashes at any point:
     *
     * 1. a batch document is inserted first (`batches`, `_id` = a new batch id): the minutes its
     *    events fall in, the aggregate documents it may touch, and `leaseUntil`;
     * 2. the logs are upserted by eventId with `$setOnInsert`, each carrying the batch id; only
     *    the events this upsert inserted are counted (a retried event is a duplicate);
     * 3. their deltas are added to `usage` and `performance` by conditional upserts that also set
     *    the batch's marker on each document, so a document takes a batch at most once;
     * 4. off the response's path: the batch is marked applied, its markers removed, its document
     *    deleted.
     *
     * A batch left pending by a failure or crash at any point is finished by `recoverPending`
     * once its lease has expired (this process's own failed counting sooner, by the next ingest
     * or pass): it recounts the batch from the logs that carry its id, and the markers make
     * whatever was already applied a no-op.
     */
    async ingest(events: RequestEvent[]): Promise<IngestResult> {
      if (events.length === 0) return { stored: 0, duplicates: 0 };
      if (uncounted.size > 0) await recoverQuietly();
      const batch = newBatchId();
      const since = now();
      // The owner writes for the first half of the lease; recovery waits for all of it.
      const deadline = since + leaseMs / 2;
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
      const everything = aggregateDeltas(docs, expiringBy(since));
      const targets: BatchTargets = { usage: [...everything.usage.keys()], performance: [...everything.performance.keys()] };
      // A store with a document limit (the embedded one) refuses a batch that could take any
      // collection it writes past it before anything is written: the batch is stored and counted
      // whole or not at all (answered 503, retried by the emitter).
      db.checkRoom?.({ batches: [batch], logs: docs.map((doc) => doc._id), usage: targets.usage, performance: targets.performance });

      owned.add(batch);
      let handedOver = false;
      let inserted: typeof docs;
      let failure: unknown;
      try {
        await batches.bulkWrite(
          [{ insertOne: { document: { _id: batch, leaseUntil: new Date(since + leaseMs), minutes: minuteRuns(docs), ...targets } } }],
          { ordered: false },
        );
        // Logs sent after the owner's deadline could land while a recovery reads them.
        checkLease(batch, deadline);
        const logOps: StoreBulkOperation[] = docs.map(({ _id, ...fields }) => ({
          updateOne: { filter: { _id }, update: { $setOnInsert: { ...fields, batch } }, upsert: true },
        }));
        let upsertedIds: { [index: number]: unknown };
        try {
          upsertedIds = (await logs.bulkWrite(logOps, { ordered: false })).upsertedIds;
        } catch (error) {
          // Only write errors say what was applied (the server answered); what did get inserted
          // is counted, then the caller retries the rest. After any other failure (network, disk)
          // what was applied is unknown: the batch is left to a recovery, which reads its logs.
          if (writeErrorsOf(error).length === 0) throw error;
          failure = error;
          upsertedIds = (error as { result?: { upsertedIds?: { [index: number]: unknown } } }).result?.upsertedIds ?? {};
        }
        inserted = Object.keys(upsertedIds).map((index) => docs[Number(index)]!);
        const deltas = aggregateDeltas(inserted, expiringBy(since));
        const counted = deltas.usage.size + deltas.performance.size > 0;
        // The logs are stored: if counting fails, the retry finds them and adds nothing, so this
        // process keeps the batch and counts it again at its next ingest or recovery pass.
        if (counted) await countOrKeep(batch, { deadline, deltas, targets });
        finishLater({ batch, deadline, targets, counted });
        handedOver = true;
      } finally {
        // Owned while its finishing is queued, or while it is kept to be counted again.
        if (!handedOver && !uncounted.has(batch)) owned.delete(batch);
      }
      if (failure) throw failure;
      // Events found stored may belong to a batch left pending by a crash (the emitter's retry
      // after a restart): recover what is due now rather than at the next timer pass.
      if (inserted.length < docs.length) {
        await recoverQuietly();
        // Answered as duplicates only when the batches that stored them are counted: a 200 ends
        // the emitter's retries, and events it acknowledges must not stay stored but uncounted.
        const found = new Set(inserted);
        const pending = await uncountedBatchesOf(
          docs.filter((doc) => !found.has(doc)).map((doc) => doc._id),
          batch,
        );
        if (pending.length > 0) throw new BatchNotCountedError(pending);
      }
      return { stored: inserted.length, duplicates: events.length - inserted.length };
    },

    /**
     * Finishes pending batches: own batches whose counting failed (within their lease), and
     * every batch whose lease has expired (a crash, or an owner that stopped at its deadline),
     * which it claims first. Safe to run from any number of processes at once; one pass at a
     * time per instance. Run at start-up and every 30 s by the service, and by an ingest that
     * found events already stored. Rejects with the first failure after trying every batch.
     */
    recoverPending(): Promise<RecoveryResult> {
      recovering ??= recoveryPass().finally(() => {
        recovering = undefined;
      });
      return recovering;
    },

    /**
     * Deletes the aggregates of minutes older than `aggregateRetentionDays` (see `expirePass`);
     * resolves with how many documents it deleted. One pass at a time per instance; safe to run
     * from several processes at once. The service runs it at start-up and every 10 minutes.
     */
    expireAggregates(): Promise<number> {
      expiring ??= expirePass().finally(() => {
        expiring = undefined;
      });
      return expiring;
    },

    /** Resolves once the bookkeeping under way (finishing counted batches, a recovery pass, an expiry pass) is done. */
    async settle(): Promise<void> {
      while (finishing || recovering || expiring) {
        await Promise.allSettled([finishing, recovering, expiring]);
      }
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
  return store;
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
