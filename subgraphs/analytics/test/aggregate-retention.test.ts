import { createLogger, createSecretsProvider, type RequestEvent } from '@ghostpay/platform';
import { createTestTokenIssuer } from '@ghostpay/test-support';
import { afterEach, describe, expect, it } from 'vitest';
import {
  type AnalyticsStore,
  aggregateRetentionDaysFor,
  createAnalyticsService,
  createAnalyticsStore,
  type StoreBulkOperation,
  type StoreDb,
} from '../src/index.ts';
import { type Backend, backends } from './backends.ts';
import { apiKeys, randomEvents } from './events.ts';

const minute = 60_000;
const hour = 60 * minute;
const day = 24 * hour;
/** The store's default lease. */
const lease = 60_000;

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

async function openBackend(backend: Backend) {
  const opened = await backend.open();
  cleanups.push(() => opened.cleanup());
  return opened.store;
}

/** Requests per API key over `[from, to)`, and the error rate's total, as the store answers them. */
async function answers(analytics: AnalyticsStore, from: number, to: number) {
  const usage: Record<string, number> = {};
  for (const key of apiKeys) {
    if (key) usage[key] = (await analytics.usage(key, new Date(from), new Date(to), 'DAY')).reduce((sum, p) => sum + p.requests, 0);
  }
  return { usage, requests: (await analytics.errorRate(new Date(from), new Date(to))).requests };
}

function expectedAnswers(events: RequestEvent[]) {
  const usage: Record<string, number> = {};
  for (const key of apiKeys) if (key) usage[key] = events.filter((e) => e.apiKeyId === key).length;
  return { usage, requests: events.length };
}

/** The aggregate documents of minutes in `[from, to)`, per collection. */
async function documentsIn(db: StoreDb, from: number, to: number) {
  const range = { minute: { $gte: new Date(from), $lt: new Date(to) } };
  return {
    usage: (await db.collection('usage').find(range).toArray()).length,
    performance: (await db.collection('performance').find(range).toArray()).length,
  };
}

describe.each(backends)('aggregate retention on $name', (backend) => {
  it('deletes the aggregates of minutes older than the retention, keeps the others, and answers from what is left', async () => {
    const store = await openBackend(backend);
    const clock = { now: Math.floor(Date.now() / hour) * hour };
    const analytics = createAnalyticsStore({ db: store.db, logRetentionDays: 1, aggregateRetentionDays: 3, now: () => clock.now });
    await analytics.ensureIndexes();
    const oldFrom = clock.now - 2 * day;
    const recentFrom = clock.now - hour;
    const old = randomEvents(60, oldFrom, 10 * minute, 11);
    const recent = randomEvents(60, recentFrom, 10 * minute, 12);
    expect(await analytics.ingest(old)).toEqual({ stored: 60, duplicates: 0 });
    expect(await analytics.ingest(recent)).toEqual({ stored: 60, duplicates: 0 });
    await analytics.settle();
    const oldDocuments = await documentsIn(store.db, oldFrom, oldFrom + 10 * minute);
    expect(oldDocuments.usage).toBeGreaterThan(0);

    // Within the retention nothing goes.
    expect(await analytics.expireAggregates()).toBe(0);
    expect(await answers(analytics, oldFrom, oldFrom + hour)).toEqual(expectedAnswers(old));

    // A day and a bit later the old minutes are over three days old; the recent ones are not.
    clock.now += day + 11 * minute;
    expect(await analytics.expireAggregates()).toBe(oldDocuments.usage + oldDocuments.performance);
    expect(await documentsIn(store.db, oldFrom, oldFrom + 10 * minute)).toEqual({ usage: 0, performance: 0 });
    expect(await answers(analytics, oldFrom, oldFrom + hour)).toEqual({ usage: { key_alpha: 0, key_beta: 0, key_gamma: 0 }, requests: 0 });
    expect(await analytics.latency('CreateCard', new Date(oldFrom), new Date(oldFrom + hour))).toMatchObject({ count: 0 });
    expect(await analytics.topOperations(new Date(oldFrom), new Date(oldFrom + hour), 10)).toEqual([]);
    expect(await answers(analytics, recentFrom, recentFrom + hour)).toEqual(expectedAnswers(recent));
    expect(await analytics.expireAggregates()).toBe(0);
    await analytics.settle();
  });

  it('deletes an expired minute once, whatever number of expiry passes run at once', async () => {
    const store = await openBackend(backend);
    const clock = { now: Math.floor(Date.now() / hour) * hour };
    const on = () => createAnalyticsStore({ db: store.db, logRetentionDays: 1, aggregateRetentionDays: 2, now: () => clock.now });
    const analytics = on();
    await analytics.ensureIndexes();
    await analytics.ingest(randomEvents(40, clock.now - 36 * hour, 5 * minute, 13));
    await analytics.settle();
    const documents = await documentsIn(store.db, clock.now - 2 * day, clock.now);
    clock.now += day;
    // Two replicas: every document is deleted, and counted as deleted by one of them.
    const [a, b, c] = await Promise.all([analytics.expireAggregates(), analytics.expireAggregates(), on().expireAggregates()]);
    expect(a).toBe(b);
    expect(a + c).toBe(documents.usage + documents.performance);
    expect(await documentsIn(store.db, 0, clock.now)).toEqual({ usage: 0, performance: 0 });
  });

  it('does not re-create an expired minute with part of its counts when expiry runs while an ingest counts into it', async () => {
    const store = await openBackend(backend);
    const retentionDays = 3;
    // The ingest starts 10 s after a minute boundary plus the retention: minute `edge` expires
    // 50 s into its lease, while its writes may still be applied.
    const start = Math.floor(Date.now() / hour) * hour + 10_000;
    const clock = { now: start - day };
    const edge = start - retentionDays * day - 10_000 + minute;
    expect(edge + retentionDays * day).toBeGreaterThan(start);
    expect(edge + retentionDays * day).toBeLessThan(start + lease);
    const analyticsOn = (db: StoreDb) =>
      createAnalyticsStore({ db, logRetentionDays: 1, aggregateRetentionDays: retentionDays, now: () => clock.now });
    const healthy = analyticsOn(store.db);
    await healthy.ensureIndexes();
    // Counted a day earlier, well within the retention.
    const early = randomEvents(30, edge, 50_000, 14);
    expect(await healthy.ingest(early)).toEqual({ stored: 30, duplicates: 0 });
    await healthy.settle();
    expect((await documentsIn(store.db, edge, edge + minute)).usage).toBeGreaterThan(0);

    // Later events of that minute (an emitter's late delivery, or a recovery reading its logs)
    // and some recent ones, in one batch whose aggregate writes are applied only after the
    // clock passed the minute's expiry and an expiry pass ran (sent in time, applied late).
    clock.now = start;
    const late = randomEvents(30, edge, 50_000, 15);
    const recent = randomEvents(30, start - 10 * minute, 5 * minute, 16);
    let expiryRan: Promise<void> | undefined;
    const slow: StoreDb = {
      collection(name) {
        const real = store.db.collection(name);
        if (name !== 'usage' && name !== 'performance') return real;
        return {
          find: (filter) => real.find(filter),
          createIndex: (keys, options) => real.createIndex(keys, options),
          async bulkWrite(ops: StoreBulkOperation[], options) {
            expiryRan ??= (async () => {
              await Promise.resolve();
              clock.now = start + 51_000;
              await healthy.expireAggregates();
            })();
            await expiryRan;
            return real.bulkWrite(ops, options);
          },
        };
      },
    };
    const ingesting = analyticsOn(slow);
    expect(await ingesting.ingest([...late, ...recent])).toEqual({ stored: 60, duplicates: 0 });
    await ingesting.settle();
    expect(expiryRan).toBeDefined();
    // Whatever the ingest left pending is finished by a recovery, which counts from the logs.
    // No expiry pass after it: a document of that minute now would stay until the next one.
    clock.now = start + 2 * lease;
    await healthy.recoverPending();
    await healthy.settle();
    expect(await documentsIn(store.db, edge, edge + minute)).toEqual({ usage: 0, performance: 0 });
    expect(await answers(healthy, edge - hour, edge + hour)).toEqual({ usage: { key_alpha: 0, key_beta: 0, key_gamma: 0 }, requests: 0 });
    expect(await answers(healthy, start - hour, start + hour)).toEqual(expectedAnswers(recent));
    // The late events' logs are stored all the same (the logs have their own retention).
    const logged = (await healthy.requestLog({ from: new Date(edge), to: new Date(edge + minute) }, 100)).entries.length;
    expect(logged).toBe(early.length + late.length);
  });

  it('starts without the usage_minute index when building it fails (a large collection), with a warning', async () => {
    const store = await openBackend(backend);
    const warnings: string[] = [];
    const db: StoreDb = {
      collection(name) {
        const real = store.db.collection(name);
        return {
          find: (filter) => real.find(filter),
          bulkWrite: (ops, options) => real.bulkWrite(ops, options),
          createIndex: (keys, options) =>
            options?.name === 'usage_minute' ? Promise.reject(new Error('operation exceeded time limit')) : real.createIndex(keys, options),
        };
      },
    };
    const analytics = createAnalyticsStore({ db, logRetentionDays: 30, onWarning: (message) => warnings.push(message) });
    await analytics.ensureIndexes();
    expect(warnings).toEqual([expect.stringMatching(/^usage_minute index not built \(operation exceeded time limit\)/)]);
    expect(await analytics.expireAggregates()).toBe(0);
  });

  it('keeps aggregates 93 days by default, a day longer than the logs when theirs is longer, and refuses less than that', async () => {
    expect(aggregateRetentionDaysFor(30)).toBe(93);
    expect(aggregateRetentionDaysFor(100)).toBe(101);
    expect(aggregateRetentionDaysFor(30, 40)).toBe(40);
    const store = await openBackend(backend);
    expect(() => createAnalyticsStore({ db: store.db, logRetentionDays: 30, aggregateRetentionDays: 30.5 })).toThrow(
      /not at least 1 day longer than the request logs/,
    );
    expect(() => createAnalyticsStore({ db: store.db, logRetentionDays: 30, aggregateRetentionDays: 31 })).not.toThrow();
  });
});

describe.each(backends)('analytics service on $name', (backend) => {
  it('deletes aggregates past ANALYTICS_AGGREGATE_RETENTION_DAYS at start, without holding the start', async () => {
    const store = await openBackend(backend);
    const now = Date.now();
    const at = (daysAgo: number) => new Date(Math.floor((now - daysAgo * day) / minute) * minute);
    const usageDoc = (daysAgo: number) => ({
      insertOne: { document: { _id: `key_old|${daysAgo}`, apiKeyId: 'key_old', minute: at(daysAgo), requests: 1, appliedBatches: {} } },
    });
    await store.db.collection('usage').bulkWrite([usageDoc(50), usageDoc(39), usageDoc(1)], { ordered: false });
    const issuer = await createTestTokenIssuer();
    const service = createAnalyticsService({
      store,
      secrets: createSecretsProvider({ env: { GHOSTPAY_SECRET_ANALYTICS_INGEST_TOKEN: 'x'.repeat(32) } }),
      logger: createLogger({ service: 'analytics', level: 'silent' }),
      verifier: issuer.verifier,
      config: {
        ANALYTICS_LOG_RETENTION_DAYS: 30,
        ANALYTICS_AGGREGATE_RETENTION_DAYS: 40,
        ANALYTICS_INGEST_MAX_EVENTS: 1000,
        ANALYTICS_INGEST_MAX_BYTES: 4 * 1024 * 1024,
      },
    });
    await service.start(0);
    try {
      await service.store.settle();
      const left = await store.db.collection('usage').find({ apiKeyId: 'key_old' }).sort({ minute: 1 }).toArray();
      expect(left.map((doc) => doc._id)).toEqual(['key_old|39', 'key_old|1']);
    } finally {
      await service.close();
    }
  });
});
