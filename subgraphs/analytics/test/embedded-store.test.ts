import { appendFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createAnalyticsStore, openEmbeddedStore } from '../src/index.ts';
import { randomEvents } from './events.ts';

const dirs: string[] = [];
const freshDir = () => {
  const dir = mkdtempSync(join(tmpdir(), 'ghostpay-embedded-'));
  dirs.push(dir);
  return dir;
};
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

const hour = 3_600_000;
const start = Math.floor((Date.now() - 2 * hour) / hour) * hour;

describe('embedded store', () => {
  it('keeps every document and Date across a restart', async () => {
    const dir = freshDir();
    const events = randomEvents(300, start, hour, 5);
    const first = openEmbeddedStore({ dir });
    const before = createAnalyticsStore({ db: first.db, logRetentionDays: 30 });
    await before.ensureIndexes();
    await before.ingest(events);
    const usageBefore = await before.usage('key_alpha', new Date(start), new Date(start + hour), 'MINUTE');
    const logBefore = await before.requestLog({}, 500);
    await first.close();

    const second = openEmbeddedStore({ dir });
    const after = createAnalyticsStore({ db: second.db, logRetentionDays: 30 });
    await after.ensureIndexes();
    expect(await after.usage('key_alpha', new Date(start), new Date(start + hour), 'MINUTE')).toEqual(usageBefore);
    expect(await after.requestLog({}, 500)).toEqual(logBefore);
    expect((await after.requestLog({}, 1)).entries[0]!.entry.timestamp).toBeInstanceOf(Date);
    // And the restored aggregates keep counting.
    await after.ingest(randomEvents(10, start, hour, 6).map((e) => ({ ...e, apiKeyId: 'key_alpha' })));
    const total = (await after.usage('key_alpha', new Date(start), new Date(start + hour), 'DAY'))[0]!.requests;
    expect(total).toBe(usageBefore.reduce((s, p) => s + p.requests, 0) + 10);
    await second.close();
  });

  it('compacts its log into one line per document without losing data', async () => {
    const dir = freshDir();
    const store = openEmbeddedStore({ dir, compactAfterLines: 50 });
    const analytics = createAnalyticsStore({ db: store.db, logRetentionDays: 30 });
    const events = randomEvents(400, start, 10 * 60_000, 8);
    for (let i = 0; i < events.length; i += 20) await analytics.ingest(events.slice(i, i + 20));
    await store.close();
    const lines = readFileSync(join(dir, 'usage.jsonl'), 'utf8').trim().split('\n');
    // 3 keys × ≤10 minutes of documents; without compaction there would be a line per batch and key-minute.
    expect(lines.length).toBeLessThanOrEqual(30 + 50);
    const reopened = openEmbeddedStore({ dir });
    const again = createAnalyticsStore({ db: reopened.db, logRetentionDays: 30 });
    const rate = await again.errorRate(new Date(start), new Date(start + hour));
    expect(rate.requests).toBe(400);
    await reopened.close();
  });

  it('ignores a torn last line left by a crash mid-write', async () => {
    const dir = freshDir();
    const store = openEmbeddedStore({ dir });
    const analytics = createAnalyticsStore({ db: store.db, logRetentionDays: 30 });
    await analytics.ingest(randomEvents(20, start, hour, 9));
    await store.close();
    appendFileSync(join(dir, 'logs.jsonl'), '{"p":{"_id":"half');
    const reopened = openEmbeddedStore({ dir });
    const again = createAnalyticsStore({ db: reopened.db, logRetentionDays: 30 });
    expect((await again.requestLog({}, 100)).entries).toHaveLength(20);
    await reopened.close();
  });

  it('expires request logs past the retention through the TTL index, and keeps the aggregates', async () => {
    const dir = freshDir();
    let now = Date.now();
    const store = openEmbeddedStore({ dir, now: () => now });
    const analytics = createAnalyticsStore({ db: store.db, logRetentionDays: 1 });
    await analytics.ensureIndexes();
    await analytics.ingest(randomEvents(30, start, hour, 10));
    expect((await analytics.requestLog({}, 100)).entries).toHaveLength(30);
    now += 2 * 86_400_000;
    // Hidden from queries at once, deleted by the sweep (MongoDB's TTL monitor runs every 60 s).
    expect((await analytics.requestLog({}, 100)).entries).toHaveLength(0);
    expect(await store.sweepExpired()).toBe(30);
    expect((await analytics.errorRate(new Date(start), new Date(start + hour))).requests).toBe(30);
    await store.close();
    const reopened = openEmbeddedStore({ dir });
    expect(await reopened.db.collection('logs').find({}).toArray()).toEqual([]);
    await reopened.close();
  });

  it('fails loudly on a query operator outside the subset instead of matching everything', async () => {
    const store = openEmbeddedStore({ dir: freshDir() });
    await expect(
      store.db
        .collection('logs')
        .find({ requestId: { $regex: 'x' } })
        .toArray(),
    ).rejects.toThrow(/unsupported query operator \$regex/);
    await store.close();
  });
});
