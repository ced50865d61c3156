import { parseConfig } from '@ghostpay/platform';
import { MongoClient, MongoNetworkTimeoutError } from 'mongodb';
import { afterEach, describe, expect, it } from 'vitest';
import {
  analyticsConfigSchema,
  connectMongoStore,
  createAnalyticsStore,
  defaultMongoTimeouts,
  leaseMarginMs,
  mongoClientOptions,
  mongoTimeoutsFrom,
  mongoWriteBoundMs,
  openAnalyticsStore,
} from '../src/index.ts';
import { writeErrorsOf } from '../src/store/document-store.ts';
import { randomEvents } from './events.ts';
import { type MongoStandIn, startMongoStandIn } from './mongo-stand-in.ts';

const baseEnv = { JWKS_URL: 'http://127.0.0.1:1/.well-known/jwks.json' };

const standIns: MongoStandIn[] = [];
const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0)) await close().catch(() => undefined);
  for (const standIn of standIns.splice(0)) await standIn.close();
});

async function standIn(): Promise<MongoStandIn> {
  const s = await startMongoStandIn();
  standIns.push(s);
  return s;
}

describe('MongoDB timeouts: configuration', () => {
  it('defaults every stage and fits the write bound inside the lease margin', () => {
    const result = parseConfig(analyticsConfigSchema, baseEnv);
    if (!result.ok) throw new Error(result.problems.join('\n'));
    const timeouts = mongoTimeoutsFrom(result.config);
    expect(timeouts).toEqual(defaultMongoTimeouts);
    expect(mongoWriteBoundMs(timeouts)).toBeLessThan(leaseMarginMs);
    expect(result.config.ANALYTICS_EMBEDDED_WRITE_TIMEOUT_MS).toBeLessThan(leaseMarginMs);
  });

  it('reads each stage from its variable', () => {
    const result = parseConfig(analyticsConfigSchema, {
      ...baseEnv,
      MONGODB_SERVER_SELECTION_TIMEOUT_MS: '1000',
      MONGODB_CONNECT_TIMEOUT_MS: '1100',
      MONGODB_WAIT_QUEUE_TIMEOUT_MS: '1200',
      MONGODB_MAX_TIME_MS: '1300',
      MONGODB_SOCKET_TIMEOUT_MS: '2400',
      ANALYTICS_EMBEDDED_WRITE_TIMEOUT_MS: '1500',
    });
    if (!result.ok) throw new Error(result.problems.join('\n'));
    expect(mongoTimeoutsFrom(result.config)).toEqual({
      serverSelectionTimeoutMs: 1000,
      connectTimeoutMs: 1100,
      waitQueueTimeoutMs: 1200,
      maxTimeMs: 1300,
      socketTimeoutMs: 2400,
    });
    expect(result.config.ANALYTICS_EMBEDDED_WRITE_TIMEOUT_MS).toBe(1500);
  });

  it.each([
    ['MONGODB_SOCKET_TIMEOUT_MS', '0'],
    ['MONGODB_MAX_TIME_MS', '-5'],
    ['MONGODB_SERVER_SELECTION_TIMEOUT_MS', '1.5'],
    ['MONGODB_WAIT_QUEUE_TIMEOUT_MS', 'soon'],
    ['ANALYTICS_EMBEDDED_WRITE_TIMEOUT_MS', '0'],
  ])('refuses %s=%s (0 would mean no bound at all to the driver)', (name, value) => {
    const result = parseConfig(analyticsConfigSchema, { ...baseEnv, [name]: value });
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.problems.some((p) => p.startsWith(`${name}:`))).toBe(true);
  });

  it('refuses a socket time-out that does not outlast the server-side bound', () => {
    const result = parseConfig(analyticsConfigSchema, { ...baseEnv, MONGODB_MAX_TIME_MS: '8000', MONGODB_SOCKET_TIMEOUT_MS: '8000' });
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.problems.join('\n')).toMatch(/MONGODB_SOCKET_TIMEOUT_MS: must be longer than MONGODB_MAX_TIME_MS/);
  });

  it('refuses timeouts that add up to more than the lease leaves for a write to land', () => {
    const result = parseConfig(analyticsConfigSchema, { ...baseEnv, MONGODB_SOCKET_TIMEOUT_MS: '25000' });
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.problems.join('\n')).toMatch(/add up to 40000 ms .* lease margin \(30000 ms\)/);
    const embedded = parseConfig(analyticsConfigSchema, { ...baseEnv, ANALYTICS_EMBEDDED_WRITE_TIMEOUT_MS: '30000' });
    expect(embedded.ok).toBe(false);
  });

  it('refuses a MONGODB_URL that is no MongoDB connection string at start, naming it, without echoing a password', () => {
    for (const url of ['nope', 'http://db:27017', 'mongodb://', 'postgres://u:hunter2@db/x', ' mongodb://db']) {
      const result = parseConfig(analyticsConfigSchema, { ...baseEnv, MONGODB_URL: url });
      expect(result.ok, url).toBe(false);
      if (!result.ok) {
        expect(result.problems.join('\n'), url).toMatch(/MONGODB_URL.*MongoDB connection string/);
        expect(result.problems.join('\n')).not.toContain('hunter2');
      }
    }
    for (const url of ['mongodb://127.0.0.1:27017', 'mongodb://u:p@a:1,b:2/db?replicaSet=rs0', 'mongodb+srv://cluster0.example.net/db']) {
      expect(parseConfig(analyticsConfigSchema, { ...baseEnv, MONGODB_URL: url }).ok, url).toBe(true);
    }
  });

  it('refuses to run the analytics on a store whose write bound does not fit the lease margin', () => {
    const db = { collection: () => ({}) } as never;
    expect(() => createAnalyticsStore({ db, logRetentionDays: 30, writeBoundMs: 30_000 })).toThrow(/not within the batch lease's margin/);
    expect(() => createAnalyticsStore({ db, logRetentionDays: 30, batchLeaseMs: 20_000, writeBoundMs: 10_000 })).toThrow(/margin/);
    expect(() => createAnalyticsStore({ db, logRetentionDays: 30, writeBoundMs: 29_999 })).not.toThrow();
  });
});

describe('MongoDB timeouts: the driver', () => {
  it('gets every stage bound and no retried writes, whatever the connection string says', () => {
    const timeouts = {
      serverSelectionTimeoutMs: 1000,
      connectTimeoutMs: 1100,
      waitQueueTimeoutMs: 1200,
      maxTimeMs: 1300,
      socketTimeoutMs: 2400,
    };
    // Parsed by the real driver; constructing a client does not connect.
    const client = new MongoClient(
      'mongodb://127.0.0.1:1/?socketTimeoutMS=0&retryWrites=true&serverSelectionTimeoutMS=30000&waitQueueTimeoutMS=0',
      mongoClientOptions(timeouts),
    );
    expect(client.options).toMatchObject({
      serverSelectionTimeoutMS: 1000,
      connectTimeoutMS: 1100,
      waitQueueTimeoutMS: 1200,
      socketTimeoutMS: 2400,
      retryWrites: false,
      maxAdaptiveRetries: 0,
    });
  });

  it('sends maxTimeMS with every command the analytics store makes', async () => {
    const server = await standIn();
    const store = await connectMongoStore({ url: server.url, database: 'bounded', timeouts: { maxTimeMs: 1234 } });
    closers.push(() => store.close());
    const analytics = createAnalyticsStore({ db: store.db, logRetentionDays: 30, writeBoundMs: store.writeBoundMs });
    await analytics.ensureIndexes();
    await analytics.ingest(randomEvents(20, Date.now() - 3_600_000, 120_000));
    await analytics.settle();
    await analytics.recoverPending();
    const [from, to] = [new Date(Date.now() - 86_400_000), new Date()];
    await analytics.usage('key_a', from, to, 'HOUR');
    await analytics.topOperations(from, to, 10);
    await analytics.latency('Op', from, to);
    await analytics.requestLog({}, 10);
    await store.ping();
    const names = new Set(server.commands.map((c) => Object.keys(c)[0]));
    // Writes (batch, logs, aggregates, bookkeeping), reads, index builds and the readiness ping.
    for (const name of ['insert', 'update', 'delete', 'find', 'createIndexes', 'ping']) expect(names).toContain(name);
    const unbounded = server.commands.filter((c) => !['endSessions'].includes(Object.keys(c)[0]!) && c.maxTimeMS !== 1234);
    expect(unbounded).toEqual([]);
  });

  it('fails an ingest on a mongod that stopped answering, instead of waiting for ever', async () => {
    const server = await standIn();
    const store = await connectMongoStore({ url: server.url, database: 'hung', timeouts: { maxTimeMs: 100, socketTimeoutMs: 300 } });
    closers.push(() => store.close());
    const analytics = createAnalyticsStore({ db: store.db, logRetentionDays: 30 });
    server.hang = true;
    const failure = await analytics.ingest(randomEvents(5, Date.now() - 3_600_000, 60_000)).then(
      () => undefined,
      (error: unknown) => error,
    );
    // The bulk write's error wraps the socket time-out; it names no write error, so the analytics
    // code takes the outcome as unknown (left to the emitter's retry and to recovery).
    expect((failure as Error).message).toMatch(/timed out/);
    expect(writeErrorsOf(failure)).toEqual([]);
    await expect(store.ping()).rejects.toBeInstanceOf(MongoNetworkTimeoutError);
    // Sent once: the driver does not retry the write (a retry is a second, later send).
    expect(server.commands.filter((c) => Object.keys(c)[0] === 'insert')).toHaveLength(1);
  });

  it('connects through openAnalyticsStore with the configured bounds', async () => {
    const server = await standIn();
    const result = parseConfig(analyticsConfigSchema, { ...baseEnv, MONGODB_URL: server.url, MONGODB_MAX_TIME_MS: '777' });
    if (!result.ok) throw new Error(result.problems.join('\n'));
    const store = await openAnalyticsStore(result.config);
    closers.push(() => store.close());
    expect(store.writeBoundMs).toBe(mongoWriteBoundMs(mongoTimeoutsFrom(result.config)));
    await store.ping();
    expect(server.commands.at(-1)).toMatchObject({ ping: 1, maxTimeMS: 777 });
  });

  it('connects through openAnalyticsStore with the default bounds when the caller names none', async () => {
    const server = await standIn();
    const store = await openAnalyticsStore({ MONGODB_URL: server.url, MONGODB_DATABASE: 'defaults', GHOSTPAY_DATA_DIR: '.data' });
    closers.push(() => store.close());
    expect(store.writeBoundMs).toBe(mongoWriteBoundMs(defaultMongoTimeouts));
    await store.ping();
    expect(server.commands.at(-1)).toMatchObject({ ping: 1, maxTimeMS: defaultMongoTimeouts.maxTimeMs });
  });
});
