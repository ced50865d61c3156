import { createLogger, createSecretsProvider, type RequestEvent } from '@ghostpay/platform';
import { createTestTokenIssuer } from '@ghostpay/test-support';
import { afterEach, describe, expect, it } from 'vitest';
import {
  type AnalyticsStore,
  anonymousOperation,
  BatchNotCountedError,
  createAnalyticsService,
  createAnalyticsStore,
  type DocumentStore,
  isErrorEvent,
  type StoreBulkOperation,
  type StoreBulkResult,
  type StoreCollection,
  type StoreDb,
} from '../src/index.ts';
import { type Backend, backends } from './backends.ts';
import { apiKeys, operations, randomEvents } from './events.ts';

const minute = 60_000;
const hour = 60 * minute;
/** The store's default lease: a recovery may claim a batch this long after its ingest began. */
const lease = 60_000;
// Whole hours in the recent past (the logs' 30-day retention keeps everything); each batch spans
// a few minutes, as the emitter's do, so it touches several aggregate documents of each kind.
const start = Math.floor((Date.now() - 3 * hour) / hour) * hour;
const span = 5 * minute;

/**
 * A fault at one bulk write: the `nth` write (from 1) this instance sends to `collection` lets
 * only its first `reach` operations reach the real store, then fails. A crash (the default) is a
 * process dying there: every write the instance starts after it fails too. `crash: false` is a
 * write that fails once (a timeout, a primary stepping down) in a process that lives on.
 */
interface Fault {
  collection: 'batches' | 'logs' | 'usage' | 'performance';
  nth: number;
  reach: number | 'all';
  crash?: boolean;
}

/**
 * The real store's `db` (embedded files or the MongoDB driver's `Db`) behind a wrapper that fails
 * writes on cue. Reads and the writes before the fault go to the real store unchanged.
 */
function withFaults(db: StoreDb, faults: Fault[]) {
  let dead = false;
  const sent = new Map<string, number>();
  const collection = (name: string): StoreCollection => {
    const real = db.collection(name);
    return {
      find: (filter) => real.find(filter),
      createIndex: (keys, options) => real.createIndex(keys, options),
      async bulkWrite(ops: StoreBulkOperation[], options: { ordered: false }): Promise<StoreBulkResult> {
        if (dead) throw new Error(`crashed: no write to ${name} after the crash`);
        const nth = (sent.get(name) ?? 0) + 1;
        sent.set(name, nth);
        const fault = faults.find((f) => f.collection === name && f.nth === nth);
        if (!fault) return real.bulkWrite(ops, options);
        const reach = fault.reach === 'all' ? ops.length : fault.reach;
        try {
          if (reach > 0) await real.bulkWrite(ops.slice(0, reach), options);
          else await Promise.resolve();
        } catch {
          // What the real store said about the part that reached it does not matter: the caller sees the fault.
        }
        if (fault.crash !== false) dead = true;
        throw new Error(`injected fault: write ${nth} to ${name} stopped after ${reach} of ${ops.length} operations`);
      },
    };
  };
  return { db: { collection } satisfies StoreDb, crashed: () => dead, sent: (name: string) => sent.get(name) ?? 0 };
}

/** Counts per API key per minute, error rate and per-operation percentiles, as the store answers them. */
async function figures(analytics: AnalyticsStore) {
  const [from, to] = [new Date(start), new Date(start + hour)];
  const usage: Record<string, { start: number; requests: number; errors: number }[]> = {};
  for (const key of apiKeys) {
    if (!key) continue;
    usage[key] = (await analytics.usage(key, from, to, 'MINUTE')).map((p) => ({
      start: p.start.getTime(),
      requests: p.requests,
      errors: p.errors,
    }));
  }
  const latency: Record<string, { count: number; maxMs: number | null }> = {};
  for (const [name] of operations) {
    const { count, maxMs } = await analytics.latency(name ?? anonymousOperation, from, to);
    latency[name ?? anonymousOperation] = { count, maxMs };
  }
  const { requests, errors } = await analytics.errorRate(from, to);
  const logs = (await analytics.requestLog({}, 500)).entries.length;
  return { usage, latency, requests, errors, logs };
}

/** The same figures counted directly from the raw events. */
function expectedFigures(events: RequestEvent[]) {
  const usage: Record<string, { start: number; requests: number; errors: number }[]> = {};
  for (const key of apiKeys) {
    if (!key) continue;
    const perMinute = new Map<number, { start: number; requests: number; errors: number }>();
    for (const e of events.filter((e) => e.apiKeyId === key)) {
      const at = Math.floor(Date.parse(e.timestamp) / minute) * minute;
      const p = perMinute.get(at) ?? { start: at, requests: 0, errors: 0 };
      p.requests++;
      if (isErrorEvent(e)) p.errors++;
      perMinute.set(at, p);
    }
    usage[key] = [...perMinute.values()].sort((a, b) => a.start - b.start);
  }
  const latency: Record<string, { count: number; maxMs: number | null }> = {};
  for (const [name] of operations) {
    const latencies = events.filter((e) => e.operationName === name).map((e) => e.latencyMs);
    latency[name ?? anonymousOperation] = { count: latencies.length, maxMs: latencies.length ? Math.max(...latencies) : null };
  }
  return { usage, latency, requests: events.length, errors: events.filter(isErrorEvent).length, logs: events.length };
}

/** No pending batch left, and no aggregate document holding a batch marker. */
async function expectNoBookkeeping(db: StoreDb) {
  expect(await db.collection('batches').find({}).toArray()).toEqual([]);
  for (const name of ['usage', 'performance']) {
    const docs = await db.collection(name).find({}).toArray();
    expect(docs.length).toBeGreaterThan(0);
    expect(docs.filter((doc) => Object.keys((doc.appliedBatches as object | undefined) ?? {}).length > 0)).toEqual([]);
  }
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

/** A fresh store with one batch counted before the test's own; the clock is the test's. */
async function setUp(backend: Backend) {
  const opened = await backend.open();
  cleanups.push(() => opened.cleanup());
  const clock = { now: Date.now() };
  const analyticsOn = (db: StoreDb) => createAnalyticsStore({ db, logRetentionDays: 30, now: () => clock.now });
  const healthy = analyticsOn(opened.store.db);
  await healthy.ensureIndexes();
  const earlier = randomEvents(40, start, span, 1);
  expect(await healthy.ingest(earlier)).toEqual({ stored: 40, duplicates: 0 });
  await healthy.settle();
  return { opened, clock, analyticsOn, earlier, events: randomEvents(60, start, span, 2) };
}

/** Crash points before the ingest answers: the emitter got no answer and retries the batch. */
const crashesBeforeTheAnswer: { point: string; faults: Fault[] }[] = [
  { point: 'before anything is written', faults: [{ collection: 'batches', nth: 1, reach: 0 }] },
  { point: 'after the batch document, before the logs', faults: [{ collection: 'logs', nth: 1, reach: 0 }] },
  { point: 'with part of the logs written', faults: [{ collection: 'logs', nth: 1, reach: 23 }] },
  {
    point: 'after the logs, before the counts',
    faults: [
      { collection: 'usage', nth: 1, reach: 0 },
      { collection: 'performance', nth: 1, reach: 0 },
    ],
  },
  {
    point: 'between aggregate documents (usage done, performance partly)',
    faults: [
      { collection: 'usage', nth: 1, reach: 'all' },
      { collection: 'performance', nth: 1, reach: 3 },
    ],
  },
  {
    point: 'between aggregate documents (performance done, usage partly)',
    faults: [
      { collection: 'usage', nth: 1, reach: 2 },
      { collection: 'performance', nth: 1, reach: 'all' },
    ],
  },
];

/** Crash points after the ingest answered (the bookkeeping after the counts): nothing is retried. */
const crashesAfterTheAnswer: { point: string; faults: Fault[] }[] = [
  { point: 'after the counts, before the batch is marked applied', faults: [{ collection: 'batches', nth: 2, reach: 0 }] },
  { point: 'after the batch is marked applied, before its markers are removed', faults: [{ collection: 'batches', nth: 2, reach: 'all' }] },
  {
    point: 'with part of the markers removed',
    faults: [
      { collection: 'usage', nth: 2, reach: 2 },
      { collection: 'performance', nth: 2, reach: 0 },
    ],
  },
  { point: 'after the markers are removed, before the batch document is deleted', faults: [{ collection: 'batches', nth: 3, reach: 0 }] },
];

describe.each(backends)('exactly-once counting on $name', (backend) => {
  it.each(crashesBeforeTheAnswer)(
    'counts a batch once when the process crashes $point and the emitter retries after the restart',
    async ({ faults }) => {
      const { opened, clock, analyticsOn, earlier, events } = await setUp(backend);
      const broken = withFaults(opened.store.db, faults);
      await expect(analyticsOn(broken.db).ingest(events)).rejects.toThrow(/injected fault/);
      expect(broken.crashed()).toBe(true);

      // The process restarts; the emitter's retry arrives once the dead ingest's lease is over.
      const store = await opened.restart();
      clock.now += lease + 1;
      const restarted = analyticsOn(store.db);
      const retry = await restarted.ingest(events);
      expect(retry.stored + retry.duplicates).toBe(events.length);
      expect(await figures(restarted)).toEqual(expectedFigures([...earlier, ...events]));
      // Any further retry, and any further recovery, adds nothing.
      expect(await restarted.ingest(events)).toEqual({ stored: 0, duplicates: events.length });
      await restarted.recoverPending();
      await restarted.settle();
      expect(await figures(restarted)).toEqual(expectedFigures([...earlier, ...events]));
      await expectNoBookkeeping(store.db);
    },
  );

  it.each(crashesAfterTheAnswer)(
    'keeps a batch counted once when the process crashes $point, and recovery cleans up',
    async ({ faults }) => {
      const { opened, clock, analyticsOn, earlier, events } = await setUp(backend);
      const broken = withFaults(opened.store.db, faults);
      const crashing = analyticsOn(broken.db);
      expect(await crashing.ingest(events)).toEqual({ stored: events.length, duplicates: 0 });
      await crashing.settle();
      expect(broken.crashed()).toBe(true);
      // Counted before the crash; the markers still on the aggregate documents change no answer.
      expect(await figures(crashing)).toEqual(expectedFigures([...earlier, ...events]));

      const store = await opened.restart();
      const restarted = analyticsOn(store.db);
      // Within the lease a recovery leaves the batch alone (its owner could still be writing).
      expect(await restarted.recoverPending()).toEqual({ recovered: 0, completed: 0 });
      expect(await store.db.collection('batches').find({}).toArray()).toHaveLength(1);
      clock.now += lease + 1;
      expect(await restarted.recoverPending()).toEqual({ recovered: 1, completed: 0 });
      expect(await restarted.recoverPending()).toEqual({ recovered: 0, completed: 0 });
      expect(await figures(restarted)).toEqual(expectedFigures([...earlier, ...events]));
      await expectNoBookkeeping(store.db);
    },
  );

  it('recovers a batch left after the logs at the next recovery pass, without a retry', async () => {
    const { opened, clock, analyticsOn, earlier, events } = await setUp(backend);
    const broken = withFaults(opened.store.db, crashesBeforeTheAnswer[3]!.faults);
    await expect(analyticsOn(broken.db).ingest(events)).rejects.toThrow(/injected fault/);
    const store = await opened.restart();
    const restarted = analyticsOn(store.db);
    clock.now += lease + 1;
    // What the service runs at start-up and every 30 s (the retry may have gone to another replica).
    expect(await restarted.recoverPending()).toEqual({ recovered: 1, completed: 0 });
    expect(await figures(restarted)).toEqual(expectedFigures([...earlier, ...events]));
    expect(await restarted.ingest(events)).toEqual({ stored: 0, duplicates: events.length });
    await restarted.settle();
    expect(await figures(restarted)).toEqual(expectedFigures([...earlier, ...events]));
    await expectNoBookkeeping(store.db);
  });

  it("sends no second attempt of an aggregate write after the owner's deadline; recovery counts the batch once", async () => {
    const { opened, clock, analyticsOn, earlier, events } = await setUp(backend);
    const real = opened.store.db;
    let answered = false;
    let sentAfterDeadline = 0;
    // The first usage write is applied, but its answer comes back at the owner's deadline and
    // reports a duplicate key, as MongoDB does when another upsert inserted a document between
    // this one's match and its insert: the owner would send those operations again.
    const db: StoreDb = {
      collection(name) {
        const collection = real.collection(name);
        if (name !== 'usage') return collection;
        return {
          find: (filter) => collection.find(filter),
          createIndex: (keys, options) => collection.createIndex(keys, options),
          async bulkWrite(ops, options) {
            if (answered) sentAfterDeadline++;
            const result = await collection.bulkWrite(ops, options);
            if (answered) return result;
            answered = true;
            clock.now += lease / 2;
            throw Object.assign(new Error('E11000 duplicate key error'), { writeErrors: [{ index: 0, code: 11000 }], result });
          },
        };
      },
    };
    await expect(analyticsOn(db).ingest(events)).rejects.toThrow(/lease expired/);
    // Sent later, it could be applied after a recovery removed the batch's markers: counted twice.
    expect(sentAfterDeadline).toBe(0);
    clock.now += lease;
    const recovering = analyticsOn(opened.store.db);
    expect(await recovering.recoverPending()).toEqual({ recovered: 1, completed: 0 });
    expect(await figures(recovering)).toEqual(expectedFigures([...earlier, ...events]));
    await expectNoBookkeeping(opened.store.db);
  });

  it('counts a batch whose aggregate write failed when the emitter retries it, at once', async () => {
    const { opened, analyticsOn, earlier, events } = await setUp(backend);
    // The log write succeeds, then one aggregate write fails (not a crash: the process lives on).
    const flaky = withFaults(opened.store.db, [{ collection: 'performance', nth: 1, reach: 0, crash: false }]);
    const analytics = analyticsOn(flaky.db);
    await expect(analytics.ingest(events)).rejects.toThrow(/injected fault/);
    // The emitter's retry, within the lease: the logs are stored, the counts are not (usage got
    // its part, performance did not); the retry completes them, each document once.
    expect(await analytics.ingest(events)).toEqual({ stored: 0, duplicates: events.length });
    expect(await figures(analytics)).toEqual(expectedFigures([...earlier, ...events]));
    await analytics.settle();
    await expectNoBookkeeping(opened.store.db);
  });

  it('counts a batch whose aggregate write failed at the next recovery pass when no retry comes', async () => {
    const { opened, analyticsOn, earlier, events } = await setUp(backend);
    const flaky = withFaults(opened.store.db, [
      { collection: 'usage', nth: 1, reach: 0, crash: false },
      { collection: 'performance', nth: 1, reach: 0, crash: false },
    ]);
    const analytics = analyticsOn(flaky.db);
    await expect(analytics.ingest(events)).rejects.toThrow(/injected fault/);
    expect(await analytics.recoverPending()).toEqual({ recovered: 0, completed: 1 });
    expect(await figures(analytics)).toEqual(expectedFigures([...earlier, ...events]));
    await analytics.settle();
    await expectNoBookkeeping(opened.store.db);
  });

  // A batch whose counting failed (not for its lease) is kept by its instance (owned: its own
  // recovery passes leave it alone) and counted again at the next ingest or pass, within its
  // deadline; a kept batch whose deadline passes, or whose renewed counting runs out of lease, is
  // forgotten by that instance (neither kept nor owned), so a recovery (this instance's too)
  // claims it once its lease is over. Every emitter retry before it is counted is answered 503.
  describe('a batch kept to be counted again', () => {
    it('is kept through failed attempts and counted once by the first that succeeds; retries until then are 503', async () => {
      const { opened, analyticsOn, earlier, events } = await setUp(backend);
      const flaky = withFaults(opened.store.db, [
        { collection: 'performance', nth: 1, reach: 0, crash: false },
        { collection: 'performance', nth: 2, reach: 0, crash: false },
        { collection: 'performance', nth: 3, reach: 0, crash: false },
      ]);
      const analytics = analyticsOn(flaky.db);
      await expect(analytics.ingest(events)).rejects.toThrow(/injected fault/);
      // The retry tries to count it twice (before and after its own batch) and fails twice.
      await expect(analytics.ingest(events)).rejects.toThrow(BatchNotCountedError);
      await analytics.settle();
      expect(flaky.sent('performance')).toBe(3);
      expect(await analytics.ingest(events)).toEqual({ stored: 0, duplicates: events.length });
      await analytics.settle();
      expect(await analytics.recoverPending()).toEqual({ recovered: 0, completed: 0 });
      expect(await figures(analytics)).toEqual(expectedFigures([...earlier, ...events]));
      await expectNoBookkeeping(opened.store.db);
    });

    it("is forgotten once its deadline passes, and this instance's recovery claims it after the lease, counting it once", async () => {
      const { opened, clock, analyticsOn, earlier, events } = await setUp(backend);
      const flaky = withFaults(opened.store.db, [{ collection: 'performance', nth: 1, reach: 0, crash: false }]);
      const analytics = analyticsOn(flaky.db);
      await expect(analytics.ingest(events)).rejects.toThrow(/injected fault/);
      clock.now += lease / 2;
      expect(await analytics.recoverPending()).toEqual({ recovered: 0, completed: 0 });
      await expect(analytics.ingest(events)).rejects.toThrow(BatchNotCountedError);
      await analytics.settle();
      clock.now += lease / 2 + 1;
      expect(await analytics.recoverPending()).toEqual({ recovered: 1, completed: 0 });
      expect(await figures(analytics)).toEqual(expectedFigures([...earlier, ...events]));
      expect(await analytics.ingest(events)).toEqual({ stored: 0, duplicates: events.length });
      await analytics.settle();
      await expectNoBookkeeping(opened.store.db);
    });

    it('is forgotten when a renewed attempt runs out of lease part-way, and counted once by a recovery after the lease', async () => {
      const { opened, clock, analyticsOn, earlier, events } = await setUp(backend);
      const flaky = withFaults(opened.store.db, [{ collection: 'performance', nth: 1, reach: 0, crash: false }]);
      let usageWrites = 0;
      // The renewed attempt's usage write is sent in time; the deadline passes as it goes out.
      const late: StoreDb = {
        collection(name) {
          const collection = flaky.db.collection(name);
          if (name !== 'usage') return collection;
          return {
            find: (filter) => collection.find(filter),
            createIndex: (keys, options) => collection.createIndex(keys, options),
            bulkWrite(ops, options) {
              if (++usageWrites === 2) clock.now += lease / 2;
              return collection.bulkWrite(ops, options);
            },
          };
        },
      };
      const analytics = analyticsOn(late);
      await expect(analytics.ingest(events)).rejects.toThrow(/injected fault/);
      await expect(analytics.recoverPending()).rejects.toThrow(/lease expired/);
      await analytics.settle();
      // Not kept any more: the retry does not count it (nor claim it, within the lease).
      await expect(analytics.ingest(events)).rejects.toThrow(BatchNotCountedError);
      await analytics.settle();
      clock.now += lease / 2 + 1;
      expect(await analytics.recoverPending()).toEqual({ recovered: 1, completed: 0 });
      expect(await figures(analytics)).toEqual(expectedFigures([...earlier, ...events]));
      expect(await analytics.ingest(events)).toEqual({ stored: 0, duplicates: events.length });
      await analytics.settle();
      await expectNoBookkeeping(opened.store.db);
    });

    /**
     * A batch crashed before its answer, the store restarted past its lease, and a recovery
     * (`recovering`) claimed it and failed to count it: what the two tests below go on from.
     */
    const afterAFailedRecovery = async () => {
      const { opened, clock, analyticsOn, earlier, events } = await setUp(backend);
      const broken = withFaults(opened.store.db, crashesBeforeTheAnswer[3]!.faults);
      await expect(analyticsOn(broken.db).ingest(events)).rejects.toThrow(/injected fault/);
      const store = await opened.restart();
      clock.now += lease + 1;
      const flaky = withFaults(store.db, [{ collection: 'usage', nth: 1, reach: 0, crash: false }]);
      const recovering = analyticsOn(flaky.db);
      await expect(recovering.recoverPending()).rejects.toThrow(/injected fault/);
      return { clock, analyticsOn, earlier, events, store, recovering };
    };

    it("is kept by a recovery whose counting failed, within its claim, and counted once at that instance's next pass", async () => {
      const { analyticsOn, earlier, events, store, recovering } = await afterAFailedRecovery();
      // Kept by the claimant: another instance's pass leaves the batch alone (its claim holds).
      expect(await analyticsOn(store.db).recoverPending()).toEqual({ recovered: 0, completed: 0 });
      await expect(analyticsOn(store.db).ingest(events)).rejects.toThrow(BatchNotCountedError);
      expect(await recovering.recoverPending()).toEqual({ recovered: 0, completed: 1 });
      expect(await figures(recovering)).toEqual(expectedFigures([...earlier, ...events]));
      expect(await recovering.ingest(events)).toEqual({ stored: 0, duplicates: events.length });
      await recovering.settle();
      await expectNoBookkeeping(store.db);
    });

    it('is forgotten by a recovery whose claim ran out before it could count, and claimed again after that claim, once', async () => {
      const { clock, earlier, events, store, recovering } = await afterAFailedRecovery();
      clock.now += lease / 2;
      expect(await recovering.recoverPending()).toEqual({ recovered: 0, completed: 0 });
      clock.now += lease / 2 + 1;
      expect(await recovering.recoverPending()).toEqual({ recovered: 1, completed: 0 });
      expect(await figures(recovering)).toEqual(expectedFigures([...earlier, ...events]));
      expect(await recovering.ingest(events)).toEqual({ stored: 0, duplicates: events.length });
      await recovering.settle();
      await expectNoBookkeeping(store.db);
    });
  });

  it('counts a crashed batch once when two recoveries claim it at the same time', async () => {
    const { opened, clock, analyticsOn, earlier, events } = await setUp(backend);
    const broken = withFaults(opened.store.db, crashesBeforeTheAnswer[4]!.faults);
    await expect(analyticsOn(broken.db).ingest(events)).rejects.toThrow(/injected fault/);
    const store = await opened.restart();
    clock.now += lease + 1;
    // Two replicas (two instances on one store) sweeping at once: one claim wins.
    const [a, b] = await Promise.all([analyticsOn(store.db).recoverPending(), analyticsOn(store.db).recoverPending()]);
    expect(a.recovered + b.recovered).toBe(1);
    expect(await figures(analyticsOn(store.db))).toEqual(expectedFigures([...earlier, ...events]));
    await expectNoBookkeeping(store.db);
  });

  it('leaves a batch in flight to its owner, and an owner past its deadline leaves it to recovery', async () => {
    const { opened, clock, analyticsOn, earlier, events } = await setUp(backend);
    // The log write of the owner is held until released.
    let release!: () => void;
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    let logsSent!: () => void;
    const logsReached = new Promise<void>((resolve) => {
      logsSent = resolve;
    });
    const slow: StoreDb = {
      collection(name) {
        const real = opened.store.db.collection(name);
        if (name !== 'logs') return real;
        return {
          find: (filter) => real.find(filter),
          createIndex: (keys, options) => real.createIndex(keys, options),
          async bulkWrite(ops, options) {
            logsSent();
            await held;
            return real.bulkWrite(ops, options);
          },
        };
      },
    };
    const owner = analyticsOn(slow);
    const ingest = owner.ingest(events);
    await logsReached;
    const other = analyticsOn(opened.store.db);
    // Within the lease, a sweep elsewhere does not touch the batch.
    expect(await other.recoverPending()).toEqual({ recovered: 0, completed: 0 });
    // Past the owner's deadline (half the lease) it stops before counting: a recovery counts it.
    clock.now += lease / 2;
    release();
    await expect(ingest).rejects.toThrow(/lease expired/);
    expect((await figures(other)).requests).toBe(earlier.length);
    clock.now += lease / 2 + 1;
    expect(await other.recoverPending()).toEqual({ recovered: 1, completed: 0 });
    expect(await figures(other)).toEqual(expectedFigures([...earlier, ...events]));
    expect(await owner.ingest(events)).toEqual({ stored: 0, duplicates: events.length });
    await owner.settle();
    expect(await figures(other)).toEqual(expectedFigures([...earlier, ...events]));
    await expectNoBookkeeping(opened.store.db);
  });

  it('finishes the bookkeeping of every batch: no pending batch and no marker left after normal ingest', async () => {
    const { opened, analyticsOn, earlier } = await setUp(backend);
    const analytics = analyticsOn(opened.store.db);
    const batches = [randomEvents(50, start, span, 3), randomEvents(50, start, span, 4), randomEvents(50, start, span, 5)];
    // Concurrent batches on the same aggregate documents, and a resent batch among them.
    await Promise.all([...batches.map((b) => analytics.ingest(b)), analytics.ingest(earlier)]);
    await analytics.settle();
    expect(await figures(analytics)).toEqual(expectedFigures([...earlier, ...batches.flat()]));
    await expectNoBookkeeping(opened.store.db);
  });
});

describe.each(backends)('analytics service on $name', (backend) => {
  it('recovers at start-up a batch a crashed process left pending', async () => {
    const opened = await backend.open();
    cleanups.push(() => opened.cleanup());
    // The crashed process began its ingest over a lease ago, on the real clock.
    const crashedClock = Date.now() - lease - 1_000;
    const started = Date.now();
    const broken = withFaults(opened.store.db, crashesBeforeTheAnswer[3]!.faults);
    const crashed = createAnalyticsStore({ db: broken.db, logRetentionDays: 30, now: () => crashedClock + (Date.now() - started) });
    const events = randomEvents(60, start, span, 6);
    await expect(crashed.ingest(events)).rejects.toThrow(/injected fault/);

    const store: DocumentStore = await opened.restart();
    const issuer = await createTestTokenIssuer();
    const service = createAnalyticsService({
      store,
      secrets: createSecretsProvider({ env: { GHOSTPAY_SECRET_ANALYTICS_INGEST_TOKEN: 'x'.repeat(32) } }),
      logger: createLogger({ service: 'analytics', level: 'silent' }),
      verifier: issuer.verifier,
      config: { ANALYTICS_LOG_RETENTION_DAYS: 30, ANALYTICS_INGEST_MAX_EVENTS: 1000, ANALYTICS_INGEST_MAX_BYTES: 4 * 1024 * 1024 },
    });
    await service.start(0);
    try {
      expect(await figures(service.store)).toEqual(expectedFigures(events));
    } finally {
      // Closes the store too; the backend's cleanup closes it again, harmlessly.
      await service.close();
    }
  });
});
