import { execFileSync } from 'node:child_process';
import {
  appendFileSync,
  closeSync,
  constants,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readSync,
  renameSync,
  rmdirSync,
  rmSync,
  statSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { RequestEvent } from '@ghostpay/platform';
import { type LockHolder, spawnLockHolder } from '@ghostpay/test-support';
import { afterEach, describe, expect, it } from 'vitest';
import {
  type AnalyticsStore,
  analyticsConfigSchema,
  BatchNotCountedError,
  createAnalyticsStore,
  EmbeddedStoreFullError,
  EmbeddedStoreInUseError,
  EmbeddedWriteTimeoutError,
  embeddedAnalyticsDir,
  openAnalyticsStore,
  openEmbeddedStore,
} from '../src/index.ts';
import { apiKeys, randomEvents } from './events.ts';

const dirs: string[] = [];
const freshDir = () => {
  const dir = mkdtempSync(join(tmpdir(), 'ghostpay-embedded-'));
  dirs.push(dir);
  return dir;
};
const holders: LockHolder[] = [];
afterEach(async () => {
  // Gone before their directories are removed.
  await Promise.all(holders.splice(0).map((holder) => holder.kill()));
  for (const dir of dirs.splice(0)) {
    rmSync(dir, { recursive: true, force: true });
    rmSync(`${dir}.lock`, { force: true });
  }
});

const hour = 3_600_000;
const start = Math.floor((Date.now() - 2 * hour) / hour) * hour;

const collections = ['logs', 'usage', 'performance'];
/**
 * A store and the analytics on it. `store.close()` first waits for the bookkeeping the analytics
 * does after answering an ingest, as the service's close does: a store reopened on the same
 * directory must not see the previous one still appending.
 */
const open = async (dir: string) => {
  const opened = await openEmbeddedStore({ dir });
  const analytics = createAnalyticsStore({ db: opened.db, logRetentionDays: 30 });
  const store = {
    ...opened,
    async close() {
      await analytics.settle();
      await opened.close();
    },
  };
  return { store, analytics };
};

/** What the store answers for events spread over the hour from `start`: logs, requests and requests per API key. */
async function totals(analytics: AnalyticsStore) {
  const [from, to] = [new Date(start), new Date(start + hour)];
  const usage: Record<string, number> = {};
  for (const key of apiKeys) {
    if (key) usage[key] = (await analytics.usage(key, from, to, 'DAY')).reduce((sum, p) => sum + p.requests, 0);
  }
  return {
    logs: (await analytics.requestLog({}, 500)).entries.length,
    requests: (await analytics.errorRate(from, to)).requests,
    usage,
  };
}

/** The same figures counted from the raw events. */
function expectedTotals(events: RequestEvent[]) {
  const usage: Record<string, number> = {};
  for (const key of apiKeys) if (key) usage[key] = events.filter((e) => e.apiKeyId === key).length;
  return { logs: events.length, requests: events.length, usage };
}

/**
 * Runs `body` with this process's file-size limit (RLIMIT_FSIZE) lowered to `bytes`: a write
 * past it stops there and fails with EFBIG (Node ignores SIGXFSZ). Vitest runs each test file in
 * its own process (`pool: 'forks'`), so nothing else is writing under the limit.
 */
async function withFileSizeLimit(bytes: number, body: () => Promise<void>): Promise<void> {
  const pid = String(process.pid);
  const soft = execFileSync('prlimit', ['--pid', pid, '--fsize', '--output=SOFT', '--noheadings', '--raw'], { encoding: 'utf8' }).trim();
  execFileSync('prlimit', ['--pid', pid, `--fsize=${bytes}:`]);
  try {
    await body();
  } finally {
    execFileSync('prlimit', ['--pid', pid, `--fsize=${soft}:`]);
  }
}

/**
 * Makes `file` a FIFO: an append to it blocks (opening it) until something opens it for reading,
 * as on a stalled disk or network file system. `release` opens it for reading and returns what
 * the blocked append then wrote, once it has closed the file.
 */
function stallAt(file: string) {
  execFileSync('mkfifo', [file]);
  return {
    async release(): Promise<string> {
      const fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK);
      const chunks: Buffer[] = [];
      try {
        // 0 bytes before anything arrived only means the writer has not opened it yet.
        for (let tries = 0; tries < 500; tries++) {
          const buffer = Buffer.alloc(65_536);
          let n: number;
          try {
            n = readSync(fd, buffer);
          } catch (error) {
            if ((error as NodeJS.ErrnoException).code !== 'EAGAIN') throw error;
            n = -1;
          }
          if (n > 0) chunks.push(buffer.subarray(0, n));
          else if (n === 0 && chunks.length > 0) break;
          await new Promise((resolve) => setTimeout(resolve, 10));
        }
      } finally {
        closeSync(fd);
      }
      return Buffer.concat(chunks).toString('utf8');
    },
  };
}

/** The first `count` lines a store appends to `logs.jsonl` when it ingests `events`, newlines included. */
async function firstLogLines(events: RequestEvent[], count: number): Promise<string> {
  const dir = freshDir();
  const scratch = await open(dir);
  await scratch.analytics.ingest(events);
  await scratch.store.close();
  const lines = readFileSync(join(dir, 'logs.jsonl'), 'utf8').split('\n');
  return `${lines.slice(0, count).join('\n')}\n`;
}

describe('embedded store', () => {
  it('keeps every document and Date across a restart', async () => {
    const dir = freshDir();
    const events = randomEvents(300, start, hour, 5);
    const first = await openEmbeddedStore({ dir });
    const before = createAnalyticsStore({ db: first.db, logRetentionDays: 30 });
    await before.ensureIndexes();
    await before.ingest(events);
    const usageBefore = await before.usage('key_alpha', new Date(start), new Date(start + hour), 'MINUTE');
    const logBefore = await before.requestLog({}, 500);
    await before.settle();
    await first.close();

    const second = await openEmbeddedStore({ dir });
    const after = createAnalyticsStore({ db: second.db, logRetentionDays: 30 });
    await after.ensureIndexes();
    expect(await after.usage('key_alpha', new Date(start), new Date(start + hour), 'MINUTE')).toEqual(usageBefore);
    expect(await after.requestLog({}, 500)).toEqual(logBefore);
    expect((await after.requestLog({}, 1)).entries[0]!.entry.timestamp).toBeInstanceOf(Date);
    // And the restored aggregates keep counting.
    await after.ingest(randomEvents(10, start, hour, 6).map((e) => ({ ...e, apiKeyId: 'key_alpha' })));
    const total = (await after.usage('key_alpha', new Date(start), new Date(start + hour), 'DAY'))[0]!.requests;
    expect(total).toBe(usageBefore.reduce((s, p) => s + p.requests, 0) + 10);
    await after.settle();
    await second.close();
  });

  it('compacts its log into one line per document without losing data', async () => {
    const dir = freshDir();
    const store = await openEmbeddedStore({ dir, compactAfterLines: 50 });
    const analytics = createAnalyticsStore({ db: store.db, logRetentionDays: 30 });
    const events = randomEvents(400, start, 10 * 60_000, 8);
    for (let i = 0; i < events.length; i += 20) await analytics.ingest(events.slice(i, i + 20));
    await analytics.settle();
    await store.close();
    const lines = readFileSync(join(dir, 'usage.jsonl'), 'utf8').trim().split('\n');
    // 3 keys × ≤10 minutes of documents; without compaction there would be a line per batch and key-minute.
    expect(lines.length).toBeLessThanOrEqual(30 + 50);
    const reopened = await openEmbeddedStore({ dir });
    const again = createAnalyticsStore({ db: reopened.db, logRetentionDays: 30 });
    const rate = await again.errorRate(new Date(start), new Date(start + hour));
    expect(rate.requests).toBe(400);
    await reopened.close();
  });

  it('keeps every record written after recovering from a torn last line', async () => {
    const dir = freshDir();
    const first = randomEvents(20, start, hour, 9);
    const later = randomEvents(15, start, hour, 19);
    let opened = await open(dir);
    await opened.analytics.ingest(first);
    await opened.store.close();
    // A crash mid-append leaves the start of a line without its end, in any collection.
    for (const name of collections) appendFileSync(join(dir, `${name}.jsonl`), '{"p":{"_id":"half');

    opened = await open(dir);
    expect(await totals(opened.analytics)).toEqual(expectedTotals(first));
    expect(await opened.analytics.ingest(later)).toEqual({ stored: 15, duplicates: 0 });
    expect(await totals(opened.analytics)).toEqual(expectedTotals([...first, ...later]));
    await opened.store.close();

    // The first record written after the recovery must not have been glued onto the fragment.
    opened = await open(dir);
    expect(await totals(opened.analytics)).toEqual(expectedTotals([...first, ...later]));
    await opened.store.close();
  });

  it('keeps a complete last record that lost only its newline, across two more restarts', async () => {
    const dir = freshDir();
    const first = randomEvents(20, start, hour, 21);
    const later = randomEvents(15, start, hour, 22);
    let opened = await open(dir);
    await opened.analytics.ingest(first);
    await opened.store.close();
    for (const name of collections) {
      const file = join(dir, `${name}.jsonl`);
      truncateSync(file, statSync(file).size - 1);
    }

    opened = await open(dir);
    expect(await totals(opened.analytics)).toEqual(expectedTotals(first));
    await opened.analytics.ingest(later);
    await opened.store.close();

    // Counters must not go backwards: the record loaded on the first restart is still there.
    opened = await open(dir);
    expect(await totals(opened.analytics)).toEqual(expectedTotals([...first, ...later]));
    await opened.store.close();
  });

  it('leaves memory as it was when a batch cannot be written, and counts the retried batch once', async () => {
    const dir = freshDir();
    const first = randomEvents(20, start, hour, 31);
    const failing = randomEvents(15, start, hour, 32);
    const concurrent = randomEvents(10, start, hour, 33);
    let opened = await open(dir);
    await opened.analytics.ingest(first);

    // A directory where the log file was: the append fails for real (EISDIR), even as root.
    const file = join(dir, 'logs.jsonl');
    renameSync(file, `${file}.saved`);
    mkdirSync(file);
    await expect(opened.analytics.ingest(failing)).rejects.toMatchObject({ code: 'EISDIR' });
    expect(await totals(opened.analytics)).toEqual(expectedTotals(first));

    rmdirSync(file);
    renameSync(`${file}.saved`, file);
    // The emitter's retry, while another batch arrives: both are counted in full, once.
    expect(await Promise.all([opened.analytics.ingest(failing), opened.analytics.ingest(concurrent)])).toEqual([
      { stored: 15, duplicates: 0 },
      { stored: 10, duplicates: 0 },
    ]);
    const all = [...first, ...failing, ...concurrent];
    expect(await totals(opened.analytics)).toEqual(expectedTotals(all));
    expect(await opened.analytics.ingest(failing)).toEqual({ stored: 0, duplicates: 15 });
    await opened.store.close();

    opened = await open(dir);
    expect(await totals(opened.analytics)).toEqual(expectedTotals(all));
    await opened.store.close();
  });

  it('drops what a failed append left half-written, so the retried batch survives a restart', async () => {
    const dir = freshDir();
    const first = randomEvents(20, start, hour, 41);
    const failing = randomEvents(15, start, hour, 42);
    let opened = await open(dir);
    await opened.analytics.ingest(first);

    // A disk that fills up mid-append: the file-size limit lets the first 50 bytes of the batch
    // in, then the write fails (EFBIG), as ENOSPC would. Real writes, and it binds root too.
    const size = statSync(join(dir, 'logs.jsonl')).size;
    await withFileSizeLimit(size + 50, async () => {
      await expect(opened.analytics.ingest(failing)).rejects.toMatchObject({ code: 'EFBIG' });
    });
    // Cut back at once, not only before the next append.
    expect(statSync(join(dir, 'logs.jsonl')).size).toBe(size);
    expect(await totals(opened.analytics)).toEqual(expectedTotals(first));

    expect(await opened.analytics.ingest(failing)).toEqual({ stored: 15, duplicates: 0 });
    await opened.store.close();
    opened = await open(dir);
    expect(await totals(opened.analytics)).toEqual(expectedTotals([...first, ...failing]));
    await opened.store.close();
  });

  it('counts a failed batch in full when the process restarts before the retry', async () => {
    const dir = freshDir();
    const first = randomEvents(20, start, hour, 51);
    const failing = randomEvents(15, start, hour, 52);
    // Puts the limit inside the failing batch's 4th log line.
    const threeLines = Buffer.byteLength(await firstLogLines(failing, 3));

    let opened = await open(dir);
    await opened.analytics.ingest(first);
    // The disk fills up after three whole lines and part of the fourth (EFBIG, as ENOSPC would).
    const size = statSync(join(dir, 'logs.jsonl')).size;
    await withFileSizeLimit(size + threeLines + 20, async () => {
      await expect(opened.analytics.ingest(failing)).rejects.toMatchObject({ code: 'EFBIG' });
    });
    // A clean shutdown before the emitter's retry: the batch was not acknowledged, so none of
    // its lines may be loaded on the next start.
    await opened.store.close();
    expect(statSync(join(dir, 'logs.jsonl')).size).toBe(size);

    opened = await open(dir);
    expect(await totals(opened.analytics)).toEqual(expectedTotals(first));
    expect(await opened.analytics.ingest(failing)).toEqual({ stored: 15, duplicates: 0 });
    expect(await totals(opened.analytics)).toEqual(expectedTotals([...first, ...failing]));
    await opened.store.close();
  });

  it('cuts off at close what a failed append left when it could not be cut at once', async () => {
    const dir = freshDir();
    const first = randomEvents(20, start, hour, 61);
    const failing = randomEvents(15, start, hour, 62);
    const opened = await open(dir);
    await opened.analytics.ingest(first);
    const file = join(dir, 'logs.jsonl');
    const size = statSync(file).size;

    // A directory where the file was: the append fails, and so does the cut after it (EISDIR).
    renameSync(file, `${file}.saved`);
    mkdirSync(file);
    await expect(opened.analytics.ingest(failing)).rejects.toMatchObject({ code: 'EISDIR' });
    rmdirSync(file);
    renameSync(`${file}.saved`, file);
    // Stands for the whole lines of the failed batch that reached the file.
    appendFileSync(file, await firstLogLines(failing, 3));

    await opened.store.close();
    expect(statSync(file).size).toBe(size);
    const reopened = await open(dir);
    expect(await reopened.analytics.ingest(failing)).toEqual({ stored: 15, duplicates: 0 });
    expect(await totals(reopened.analytics)).toEqual(expectedTotals([...first, ...failing]));
    await reopened.store.close();
  });

  it('changes no document when a bulk write cannot be appended, updates included', async () => {
    const dir = freshDir();
    let store = await openEmbeddedStore({ dir });
    const counters = store.db.collection('counters');
    const increment = (by: number) => ({ updateOne: { filter: { _id: 'a' }, update: { $inc: { n: by } }, upsert: true } });
    await counters.bulkWrite([increment(1)], { ordered: false });

    const file = join(dir, 'counters.jsonl');
    renameSync(file, `${file}.saved`);
    mkdirSync(file);
    const batch = [increment(5), { insertOne: { document: { _id: 'b', n: 1 } } }];
    await expect(counters.bulkWrite(batch, { ordered: false })).rejects.toMatchObject({ code: 'EISDIR' });
    expect(await counters.find({}).toArray()).toEqual([{ _id: 'a', n: 1 }]);

    rmdirSync(file);
    renameSync(`${file}.saved`, file);
    // The retry, with another write to the same document at the same time: neither is lost.
    const [retried] = await Promise.all([
      counters.bulkWrite(batch, { ordered: false }),
      counters.bulkWrite([increment(10)], { ordered: false }),
    ]);
    expect(retried).toMatchObject({ matchedCount: 1, modifiedCount: 1, insertedCount: 1 });
    const expected = [
      { _id: 'a', n: 16 },
      { _id: 'b', n: 1 },
    ];
    expect(await counters.find({}).sort({ _id: 1 }).toArray()).toEqual(expected);
    await store.close();
    store = await openEmbeddedStore({ dir });
    expect(await store.db.collection('counters').find({}).sort({ _id: 1 }).toArray()).toEqual(expected);
    await store.close();
  });

  it('keeps deletions and removed fields across a restart', async () => {
    const dir = freshDir();
    let store = await openEmbeddedStore({ dir });
    const docs = store.db.collection('docs');
    await docs.bulkWrite(
      [{ insertOne: { document: { _id: 'a', n: 1, applied: { m1: 1 } } } }, { insertOne: { document: { _id: 'b', n: 2 } } }],
      { ordered: false },
    );
    await docs.bulkWrite(
      [{ deleteOne: { filter: { _id: 'b' } } }, { updateOne: { filter: { _id: 'a' }, update: { $unset: { 'applied.m1': '' } } } }],
      { ordered: false },
    );
    await store.close();
    store = await openEmbeddedStore({ dir });
    expect(await store.db.collection('docs').find({}).toArray()).toEqual([{ _id: 'a', n: 1, applied: {} }]);
    await store.close();
  });

  it('leaves a document unchanged when one of its update operators fails, as MongoDB does', async () => {
    const store = await openEmbeddedStore({ dir: freshDir() });
    const docs = store.db.collection('docs');
    await docs.bulkWrite([{ insertOne: { document: { _id: 'a', n: 'text' } } }], { ordered: false });
    await expect(
      docs.bulkWrite([{ updateOne: { filter: { _id: 'a' }, update: { $set: { x: 1 }, $inc: { n: 1 } } } }], { ordered: false }),
    ).rejects.toThrow(/cannot \$inc non-number/);
    expect(await docs.find({}).toArray()).toEqual([{ _id: 'a', n: 'text' }]);
    await store.close();
  });

  it('reports a write as done when only the compaction after it fails, and compacts later', async () => {
    const dir = freshDir();
    let store = await openEmbeddedStore({ dir, compactAfterLines: 1 });
    const counters = store.db.collection('counters');
    const increment = { updateOne: { filter: { _id: 'a' }, update: { $inc: { n: 1 } }, upsert: true } };
    // The snapshot cannot be written while a directory sits where its temp file goes.
    mkdirSync(join(dir, 'counters.jsonl.tmp'));
    for (let i = 0; i < 4; i++) await counters.bulkWrite([increment], { ordered: false });
    expect(await counters.find({}).toArray()).toEqual([{ _id: 'a', n: 4 }]);

    rmdirSync(join(dir, 'counters.jsonl.tmp'));
    await counters.bulkWrite([increment], { ordered: false });
    await store.close();
    expect(readFileSync(join(dir, 'counters.jsonl'), 'utf8').trim().split('\n')).toHaveLength(1);
    store = await openEmbeddedStore({ dir });
    expect(await store.db.collection('counters').find({}).toArray()).toEqual([{ _id: 'a', n: 5 }]);
    await store.close();
  });

  it('expires request logs past the retention through the TTL index, and keeps the aggregates', async () => {
    const dir = freshDir();
    let now = Date.now();
    const store = await openEmbeddedStore({ dir, now: () => now });
    const analytics = createAnalyticsStore({ db: store.db, logRetentionDays: 1 });
    await analytics.ensureIndexes();
    await analytics.ingest(randomEvents(30, start, hour, 10));
    expect((await analytics.requestLog({}, 100)).entries).toHaveLength(30);
    now += 2 * 86_400_000;
    // As on MongoDB, a TTL index hides nothing: expired logs are served until the sweep (the
    // TTL monitor, every 60 s) deletes them.
    expect((await analytics.requestLog({}, 100)).entries).toHaveLength(30);
    expect(await store.sweepExpired()).toBe(30);
    expect((await analytics.requestLog({}, 100)).entries).toHaveLength(0);
    expect((await analytics.errorRate(new Date(start), new Date(start + hour))).requests).toBe(30);
    await analytics.settle();
    await store.close();
    const reopened = await openEmbeddedStore({ dir });
    expect(await reopened.db.collection('logs').find({}).toArray()).toEqual([]);
    await reopened.close();
  });

  it('deletes at start what expired while no process had it open, not a sweep interval later', async () => {
    const dir = freshDir();
    let now = Date.now();
    const first = await openEmbeddedStore({ dir, now: () => now });
    const before = createAnalyticsStore({ db: first.db, logRetentionDays: 1 });
    await before.ensureIndexes();
    const [old, recent] = [randomEvents(20, now - 3 * hour, hour, 5), randomEvents(10, now - hour, hour, 5)];
    await before.ingest([...old!, ...recent!]);
    await before.settle();
    await first.close();
    // Down for a day: the older events' logs are past the one-day retention, the recent ones not yet.
    now += 86_400_000 - 2 * hour;
    const second = await openEmbeddedStore({ dir, now: () => now });
    const after = createAnalyticsStore({ db: second.db, logRetentionDays: 1 });
    await after.ensureIndexes();
    const ids = (await after.requestLog({}, 100)).entries.map((e) => e.entry.id).sort();
    expect(ids).toEqual(recent!.map((e) => e.eventId).sort());
    // The aggregates are kept, as on MongoDB.
    expect((await after.errorRate(new Date(now - 2 * 86_400_000), new Date(now + hour))).requests).toBe(30);
    await after.settle();
    await second.close();
    // Deleted in the file too: a store opened without the TTL index loads the recent logs only.
    const third = await openEmbeddedStore({ dir, now: () => now });
    expect((await third.db.collection('logs').find({}).toArray()).map((doc) => doc._id).sort()).toEqual(ids);
    await third.close();
  });

  it('counts a retried event older than the retention once while its log is still stored, as MongoDB does', async () => {
    const store = await openEmbeddedStore({ dir: freshDir() });
    const analytics = createAnalyticsStore({ db: store.db, logRetentionDays: 30 });
    await analytics.ensureIndexes();
    // An event the emitter kept past the retention (a long outage), delivered, then retried
    // because the response was lost: the log is expired from the start, but MongoDB keeps it
    // until its TTL monitor runs, so the retry's upsert finds it.
    const [event] = randomEvents(1, Date.now() - 31 * 86_400_000, 1, 31).map((e) => ({ ...e, apiKeyId: 'key_late' }));
    expect(await analytics.ingest([event!])).toEqual({ stored: 1, duplicates: 0 });
    expect(await analytics.ingest([event!])).toEqual({ stored: 0, duplicates: 1 });
    const at = Date.parse(event!.timestamp);
    const usage = await analytics.usage('key_late', new Date(at - hour), new Date(at + hour), 'DAY');
    expect(usage.map((p) => p.requests)).toEqual([1]);
    expect((await analytics.requestLog({ apiKeyId: 'key_late' }, 10)).entries.map((e) => e.entry.id)).toEqual([event!.eventId]);
    expect(await store.sweepExpired()).toBe(1);
    expect((await analytics.requestLog({ apiKeyId: 'key_late' }, 10)).entries).toEqual([]);
    await store.close();
  });

  it('lets writes match and update an expired document until the sweep deletes it', async () => {
    let now = Date.now();
    const store = await openEmbeddedStore({ dir: freshDir(), now: () => now });
    const docs = store.db.collection('things');
    await docs.createIndex({ at: 1 }, { expireAfterSeconds: 60 });
    await docs.bulkWrite([{ insertOne: { document: { _id: 'a', at: new Date(now), n: 1 } } }], { ordered: false });
    now += 120_000;
    const upsert = await docs.bulkWrite(
      [{ updateOne: { filter: { _id: 'a' }, update: { $setOnInsert: { n: 100 }, $inc: { seen: 1 } }, upsert: true } }],
      { ordered: false },
    );
    expect(upsert).toMatchObject({ matchedCount: 1, modifiedCount: 1, upsertedCount: 0 });
    await expect(docs.bulkWrite([{ insertOne: { document: { _id: 'a', at: new Date(now) } } }], { ordered: false })).rejects.toThrow(
      /duplicate key/,
    );
    expect(await docs.find({ n: 1 }).toArray()).toEqual([{ _id: 'a', at: new Date(now - 120_000), n: 1, seen: 1 }]);
    expect(await store.sweepExpired()).toBe(1);
    expect(await docs.find({}).toArray()).toEqual([]);
    await store.close();
  });

  it('fails a write a stalled disk holds past writeTimeoutMs, applies nothing of it, and cuts off what reaches the file later', async () => {
    const dir = freshDir();
    const file = join(dir, 'things.jsonl');
    let store = await openEmbeddedStore({ dir, writeTimeoutMs: 200 });
    const things = store.db.collection('things');
    const stall = stallAt(file);
    const stalled = things.bulkWrite([{ insertOne: { document: { _id: 'a' } } }], { ordered: false });
    const queued = things.bulkWrite([{ insertOne: { document: { _id: 'b' } } }], { ordered: false });
    // The caller gets an answer while the disk is still stalled: an ingest answers 503 and the
    // emitter keeps the batch, instead of both waiting for ever.
    await expect(stalled).rejects.toBeInstanceOf(EmbeddedWriteTimeoutError);
    await expect(queued).rejects.toBeInstanceOf(EmbeddedWriteTimeoutError);
    expect(await things.find({}).toArray()).toEqual([]);

    // The disk comes back: the stalled append completes, after its caller was told it failed.
    const reached = await stall.release();
    expect(reached).toContain('"_id":"a"');
    // What it wrote stays in the file as a regular file would hold it.
    rmSync(file);
    writeFileSync(file, reached);
    await things.bulkWrite([{ insertOne: { document: { _id: 'c' } } }], { ordered: false });
    expect(await things.find({}).toArray()).toEqual([{ _id: 'c' }]);
    await store.close();
    // Cut off before the next append: a restart does not load the failed write either.
    expect(readFileSync(file, 'utf8')).not.toContain('"_id":"a"');
    store = await openEmbeddedStore({ dir });
    expect(await store.db.collection('things').find({}).toArray()).toEqual([{ _id: 'c' }]);
    await store.close();
  });

  it('closes within writeTimeoutMs while a write is stalled', async () => {
    const dir = freshDir();
    const store = await openEmbeddedStore({ dir, writeTimeoutMs: 200 });
    const things = store.db.collection('things');
    const stall = stallAt(join(dir, 'things.jsonl'));
    const write = things.bulkWrite([{ insertOne: { document: { _id: 'a' } } }], { ordered: false }).catch((error: unknown) => error);
    await expect(store.close()).rejects.toThrow(/stalled/);
    expect(await write).toBeInstanceOf(EmbeddedWriteTimeoutError);
    await stall.release();
    // Closed all the same: the directory is free for the next store.
    expect(existsSync(`${dir}.lock`)).toBe(false);
    const next = await openEmbeddedStore({ dir });
    await next.close();
  });

  it('refuses a write that would take a collection past maxDocuments, whole and changing nothing, until deletions make room', async () => {
    const dir = freshDir();
    const store = await openEmbeddedStore({ dir, maxDocuments: 3 });
    const docs = store.db.collection('docs');
    const insert = (...ids: string[]) =>
      docs.bulkWrite(
        ids.map((_id) => ({ insertOne: { document: { _id, n: 0 } } })),
        { ordered: false },
      );
    await insert('a', 'b');
    // Two more would make four: neither is written, in memory or in the file.
    await expect(insert('c', 'd')).rejects.toThrow(EmbeddedStoreFullError);
    await expect(insert('c', 'd')).rejects.toThrow(/holds its limit of 3 documents \(ANALYTICS_EMBEDDED_MAX_DOCUMENTS\)/);
    expect((await docs.find({}).toArray()).map((doc) => doc._id).sort()).toEqual(['a', 'b']);
    await insert('c');
    // Full: updates of stored documents still apply, and a write that deletes as many as it adds.
    await expect(insert('d')).rejects.toThrow(EmbeddedStoreFullError);
    await docs.bulkWrite([{ updateOne: { filter: { _id: 'a' }, update: { $inc: { n: 1 } }, upsert: true } }], { ordered: false });
    await docs.bulkWrite([{ deleteOne: { filter: { _id: 'b' } } }, { insertOne: { document: { _id: 'd', n: 0 } } }], { ordered: false });
    await store.close();
    const reopened = await openEmbeddedStore({ dir, maxDocuments: 3 });
    const stored = await reopened.db.collection('docs').find({}).sort({ _id: 1 }).toArray();
    expect(stored).toEqual([
      { _id: 'a', n: 1 },
      { _id: 'c', n: 0 },
      { _id: 'd', n: 0 },
    ]);
    await reopened.close();
  });

  it('takes its limit from ANALYTICS_EMBEDDED_MAX_DOCUMENTS (default 1000000) through openAnalyticsStore', async () => {
    const dir = freshDir();
    expect(analyticsConfigSchema.parse({ GHOSTPAY_DATA_DIR: dir }).ANALYTICS_EMBEDDED_MAX_DOCUMENTS).toBe(1_000_000);
    expect(analyticsConfigSchema.safeParse({ GHOSTPAY_DATA_DIR: dir, ANALYTICS_EMBEDDED_MAX_DOCUMENTS: '0' }).success).toBe(false);
    const store = await openAnalyticsStore(analyticsConfigSchema.parse({ GHOSTPAY_DATA_DIR: dir, ANALYTICS_EMBEDDED_MAX_DOCUMENTS: '1' }));
    const docs = store.db.collection('docs');
    await docs.bulkWrite([{ insertOne: { document: { _id: 'a' } } }], { ordered: false });
    await expect(docs.bulkWrite([{ insertOne: { document: { _id: 'b' } } }], { ordered: false })).rejects.toThrow(EmbeddedStoreFullError);
    await store.close();
  });

  it('answers an ingest past maxDocuments with an error and stores none of it; the expired logs the sweep deletes make room', async () => {
    let now = Date.now();
    const store = await openEmbeddedStore({ dir: freshDir(), maxDocuments: 40, now: () => now });
    const analytics = createAnalyticsStore({ db: store.db, logRetentionDays: 1 });
    await analytics.ensureIndexes();
    const first = randomEvents(30, now - hour, hour, 21);
    expect(await analytics.ingest(first)).toEqual({ stored: 30, duplicates: 0 });
    const second = randomEvents(20, now - hour, hour, 22);
    await expect(analytics.ingest(second)).rejects.toThrow(EmbeddedStoreFullError);
    await analytics.settle();
    expect((await analytics.requestLog({}, 100)).entries).toHaveLength(30);
    expect((await analytics.errorRate(new Date(now - 2 * hour), new Date(now + hour))).requests).toBe(30);
    // A day later the first logs have expired: once swept, the emitter's retry is stored and counted.
    now += 86_400_000;
    await store.sweepExpired();
    const retry = second.map((event) => ({ ...event, timestamp: new Date(now - 60_000).toISOString() }));
    expect(await analytics.ingest(retry)).toEqual({ stored: 20, duplicates: 0 });
    await analytics.settle();
    await store.close();
  });

  describe('a batch whose counting cannot succeed (usage at maxDocuments)', () => {
    const cap = 30;
    /** A store whose `usage` holds `cap` documents of another key, and the analytics on it. */
    const fullUsage = async () => {
      const clock = { now: Date.now() };
      const dataDir = freshDir();
      const store = await openEmbeddedStore({ dir: embeddedAnalyticsDir(dataDir), maxDocuments: cap, now: () => clock.now });
      const fillers = Array.from({ length: cap }, (_, i) => `filler|${i}`);
      await store.db.collection('usage').bulkWrite(
        fillers.map((_id) => ({ insertOne: { document: { _id, apiKeyId: 'filler', minute: new Date(0), requests: 1 } } })),
        { ordered: false },
      );
      // Room made as an operator would (raising the limit is a restart): old aggregates deleted.
      const freeUsage = () =>
        store.db.collection('usage').bulkWrite(
          fillers.map((_id) => ({ deleteOne: { filter: { _id } } })),
          { ordered: false },
        );
      /** The process restarted with `ANALYTICS_EMBEDDED_MAX_DOCUMENTS` raised, as the README says to. */
      const restartWithLimit = async (analytics: AnalyticsStore, limit: number) => {
        await analytics.settle();
        await store.close();
        const config = analyticsConfigSchema.parse({ GHOSTPAY_DATA_DIR: dataDir, ANALYTICS_EMBEDDED_MAX_DOCUMENTS: String(limit) });
        return openAnalyticsStore(config);
      };
      return { clock, store, freeUsage, restartWithLimit };
    };
    const events = randomEvents(20, start, 5 * 60_000, 31);
    const range = [new Date(start - hour), new Date(start + hour)] as const;
    /** What the queries count, and the bookkeeping left. */
    const counted = async (
      analytics: AnalyticsStore,
      db: { collection(name: string): { find(f: object): { toArray(): Promise<object[]> } } },
    ) => {
      const usage: Record<string, number> = {};
      for (const key of apiKeys) {
        if (key) usage[key] = (await analytics.usage(key, ...range, 'DAY')).reduce((sum, p) => sum + p.requests, 0);
      }
      return {
        requests: (await analytics.errorRate(...range)).requests,
        usage,
        logs: (await analytics.requestLog({}, 100)).entries.length,
        pendingBatches: (await db.collection('batches').find({}).toArray()).length,
      };
    };
    const none = { requests: 0, usage: { key_alpha: 0, key_beta: 0, key_gamma: 0 }, logs: 0, pendingBatches: 0 };
    const once = () => {
      const usage: Record<string, number> = {};
      for (const key of apiKeys) if (key) usage[key] = events.filter((e) => e.apiKeyId === key).length;
      return { requests: events.length, usage, logs: events.length, pendingBatches: 0 };
    };

    it('refuses the whole batch before writing any of it, and the retry once there is room stores and counts it once', async () => {
      const { store, freeUsage } = await fullUsage();
      const analytics = createAnalyticsStore({ db: store.db, logRetentionDays: 30 });
      await analytics.ensureIndexes();
      // Refused (the ingest answers 503): no log, no count in any collection, no pending batch.
      await expect(analytics.ingest(events)).rejects.toThrow(EmbeddedStoreFullError);
      await analytics.settle();
      expect(await counted(analytics, store.db)).toEqual(none);
      // The emitter's retry while still full: refused the same way, never 200 with duplicates.
      await expect(analytics.ingest(events)).rejects.toThrow(EmbeddedStoreFullError);
      await analytics.settle();
      expect(await counted(analytics, store.db)).toEqual(none);
      await freeUsage();
      expect(await analytics.ingest(events)).toEqual({ stored: events.length, duplicates: 0 });
      await analytics.settle();
      expect(await counted(analytics, store.db)).toEqual(once());
      expect(await analytics.ingest(events)).toEqual({ stored: 0, duplicates: events.length });
      await analytics.settle();
      expect(await counted(analytics, store.db)).toEqual(once());
      await store.close();
    });

    it('answers the retry of a batch stored but not counted with an error, not as duplicates, until it is counted once', async () => {
      const { clock, store, freeUsage } = await fullUsage();
      // Without the check (the db seen through the driver's subset only), as when a concurrent
      // batch takes the room between the check and the counts: the logs are stored, usage is not.
      const db = { collection: (name: string) => store.db.collection(name) };
      const analytics = createAnalyticsStore({ db, logRetentionDays: 30, now: () => clock.now });
      await analytics.ensureIndexes();
      await expect(analytics.ingest(events)).rejects.toThrow(EmbeddedStoreFullError);
      // The retry within the lease, and after it (a recovery then claims the batch, and fails).
      await expect(analytics.ingest(events)).rejects.toThrow(BatchNotCountedError);
      clock.now += 61_000;
      await expect(analytics.ingest(events)).rejects.toThrow(BatchNotCountedError);
      await analytics.settle();
      expect((await counted(analytics, store.db)).usage).toEqual(none.usage);
      await freeUsage();
      // Room again: the retry's recovery counts the batch, and the retry is answered as duplicates.
      expect(await analytics.ingest(events)).toEqual({ stored: 0, duplicates: events.length });
      await analytics.settle();
      expect(await counted(analytics, store.db)).toEqual(once());
      await analytics.recoverPending();
      expect(await analytics.ingest(events)).toEqual({ stored: 0, duplicates: events.length });
      await analytics.settle();
      expect(await counted(analytics, store.db)).toEqual(once());
      for (const name of ['usage', 'performance']) {
        const marked = (await store.db.collection(name).find({}).toArray()).filter(
          (doc) => Object.keys((doc.appliedBatches as object | undefined) ?? {}).length > 0,
        );
        expect(marked).toEqual([]);
      }
      await store.close();
    });

    it('counts, once, the batches it refused whole after a restart with a higher ANALYTICS_EMBEDDED_MAX_DOCUMENTS', async () => {
      const { clock, store, restartWithLimit } = await fullUsage();
      const analytics = createAnalyticsStore({ db: store.db, logRetentionDays: 30, now: () => clock.now });
      await analytics.ensureIndexes();
      const second = randomEvents(15, start, 5 * 60_000, 32);
      await expect(analytics.ingest(events)).rejects.toThrow(EmbeddedStoreFullError);
      await expect(analytics.ingest(second)).rejects.toThrow(EmbeddedStoreFullError);
      const raised = await restartWithLimit(analytics, 10 * cap);
      try {
        const restarted = createAnalyticsStore({ db: raised.db, logRetentionDays: 30, now: () => clock.now });
        await restarted.ensureIndexes();
        // The emitter's retries of both batches, after the restart.
        expect(await restarted.ingest(events)).toEqual({ stored: events.length, duplicates: 0 });
        expect(await restarted.ingest(second)).toEqual({ stored: second.length, duplicates: 0 });
        expect(await restarted.ingest(events)).toEqual({ stored: 0, duplicates: events.length });
        await restarted.settle();
        const both = [...events, ...second];
        const usage: Record<string, number> = {};
        for (const key of apiKeys) if (key) usage[key] = both.filter((e) => e.apiKeyId === key).length;
        expect(await counted(restarted, raised.db)).toEqual({ requests: both.length, usage, logs: both.length, pendingBatches: 0 });
        // The filler aggregates are still there: the raised limit made the room, nothing was deleted.
        expect((await raised.db.collection('usage').find({ apiKeyId: 'filler' }).toArray()).length).toBe(cap);
      } finally {
        await raised.close();
      }
    });

    it('counts, once, a batch stored but not counted before a restart with a higher ANALYTICS_EMBEDDED_MAX_DOCUMENTS', async () => {
      const { clock, store, restartWithLimit } = await fullUsage();
      // Logs stored, counts refused (a concurrent batch took the room between the check and the counts).
      const db = { collection: (name: string) => store.db.collection(name) };
      const analytics = createAnalyticsStore({ db, logRetentionDays: 30, now: () => clock.now });
      await analytics.ensureIndexes();
      await expect(analytics.ingest(events)).rejects.toThrow(EmbeddedStoreFullError);
      // What the process knew (the batch to count again) is gone with it; the batch document stays.
      const raised = await restartWithLimit(analytics, 10 * cap);
      try {
        const restarted = createAnalyticsStore({ db: raised.db, logRetentionDays: 30, now: () => clock.now });
        await restarted.ensureIndexes();
        expect(await restarted.recoverPending()).toEqual({ recovered: 0, completed: 0 });
        // Within the dead ingest's lease the batch is not this process's to count: the retry is
        // answered 503, not 200 with the events as duplicates.
        await expect(restarted.ingest(events)).rejects.toThrow(BatchNotCountedError);
        expect((await counted(restarted, raised.db)).usage).toEqual(none.usage);
        // Past the lease, the retry's recovery claims and counts it (room now), and answers duplicates.
        clock.now += 61_000;
        expect(await restarted.ingest(events)).toEqual({ stored: 0, duplicates: events.length });
        await restarted.settle();
        expect(await counted(restarted, raised.db)).toEqual(once());
        expect(await restarted.recoverPending()).toEqual({ recovered: 0, completed: 0 });
        expect(await restarted.ingest(events)).toEqual({ stored: 0, duplicates: events.length });
        await restarted.settle();
        expect(await counted(restarted, raised.db)).toEqual(once());
      } finally {
        await raised.close();
      }
    });
  });

  it('fails loudly on a query operator outside the subset instead of matching everything', async () => {
    const store = await openEmbeddedStore({ dir: freshDir() });
    await expect(
      store.db
        .collection('logs')
        .find({ requestId: { $regex: 'x' } })
        .toArray(),
    ).rejects.toThrow(/unsupported query operator \$regex/);
    await store.close();
  });
});

const storeModule = fileURLToPath(new URL('../src/store/embedded-store.ts', import.meta.url));

/** Another process with an embedded store open on `dir`, one document written; it holds the store until killed. */
async function otherProcessHolding(dir: string): Promise<LockHolder> {
  const holder = await spawnLockHolder({
    kind: 'script',
    script: `
      const { openEmbeddedStore } = await import(${JSON.stringify(storeModule)});
      const store = await openEmbeddedStore({ dir: ${JSON.stringify(dir)} });
      await store.db.collection('things').bulkWrite([{ insertOne: { document: { _id: 'theirs' } } }], { ordered: false });`,
  });
  holders.push(holder);
  return holder;
}

const refusal = (dir: string) =>
  openEmbeddedStore({ dir }).then(
    async (store) => {
      await store.close();
      return undefined;
    },
    (error: unknown) => error,
  );

describe('one process per embedded store directory', () => {
  it('refuses a second store on the directory in this process, naming it, and opens it again once the first is closed', async () => {
    const dir = freshDir();
    const first = await openEmbeddedStore({ dir });
    await first.db.collection('things').bulkWrite([{ insertOne: { document: { _id: 'a' } } }], { ordered: false });
    const refused = await refusal(dir);
    expect(refused).toBeInstanceOf(EmbeddedStoreInUseError);
    expect((refused as EmbeddedStoreInUseError).pid).toBe(process.pid);
    expect((refused as Error).message).toBe(
      `${dir} is open in another process (${process.pid}, this one): the embedded analytics store allows one process per directory. ` +
        'Stop it first (npm start or an analytics service on the same GHOSTPAY_DATA_DIR), or set MONGODB_URL to run several. ' +
        `If no such process runs, delete ${dir}.lock.`,
    );
    // The refused opener touched nothing: the first store goes on writing.
    await first.db.collection('things').bulkWrite([{ insertOne: { document: { _id: 'b' } } }], { ordered: false });
    await first.close();
    expect(existsSync(`${dir}.lock`)).toBe(false);
    const again = await openEmbeddedStore({ dir });
    expect(await again.db.collection('things').find({}).sort({ _id: 1 }).toArray()).toEqual([{ _id: 'a' }, { _id: 'b' }]);
    await again.close();
  });

  it('refuses a directory another running process has open, with its pid, and takes it over once that process is gone', async () => {
    const dir = freshDir();
    const holder = await otherProcessHolding(dir);
    const refused = await refusal(dir);
    expect(refused).toBeInstanceOf(EmbeddedStoreInUseError);
    expect((refused as EmbeddedStoreInUseError).pid).toBe(holder.pid);
    expect((refused as Error).message).toContain(`${dir} is open in another process (${holder.pid})`);
    // Killed without a chance to remove its lock (a crash): the lock is stale, and is taken over.
    await holder.kill();
    const store = await openEmbeddedStore({ dir });
    expect(await store.db.collection('things').find({}).toArray()).toEqual([{ _id: 'theirs' }]);
    await store.close();
    expect(existsSync(`${dir}.lock`)).toBe(false);
  });
});

describe('what the embedded store loads', () => {
  it('opens, locks and closes a store without loading @ghostpay/db, drizzle or PGlite', async () => {
    const dir = freshDir();
    // A service on the embedded store, in a process of its own: every package it resolves is noted.
    const script = `
      const { registerHooks } = await import('node:module');
      const resolved = new Set();
      registerHooks({ resolve(specifier, context, next) { resolved.add(specifier); return next(specifier, context); } });
      const { openEmbeddedStore } = await import(${JSON.stringify(fileURLToPath(new URL('../src/index.ts', import.meta.url)))});
      const store = await openEmbeddedStore({ dir: ${JSON.stringify(dir)} });
      await store.db.collection('things').bulkWrite([{ insertOne: { document: { _id: 'a' } } }], { ordered: false });
      await store.close();
      process.stdout.write(JSON.stringify([...resolved]));`;
    const resolved = JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' })) as string[];
    // Not vacuous: the hook saw the service's own imports, the lock's package among them.
    expect(resolved).toContain('@ghostpay/platform');
    expect(resolved.filter((specifier) => /^(@ghostpay\/db|drizzle-orm|@electric-sql\/pglite)(\/|$)/.test(specifier))).toEqual([]);
    expect(existsSync(`${dir}.lock`)).toBe(false);
  });
});
