import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { connect } from 'node:net';
import {
  boundOperationName,
  createLogger,
  createSecretsProvider,
  isErrorCode,
  type RequestEvent,
  requestEventLimits,
} from '@ghostpay/platform';
import { createTestTokenIssuer, type TestTokenIssuer } from '@ghostpay/test-support';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type AnalyticsService,
  bucketField,
  bucketIndexFor,
  createAnalyticsService,
  maxEventClockSkewMs,
  maxIdLength,
  type StoreDb,
} from '../src/index.ts';
import { backends } from './backends.ts';
import { randomEvents } from './events.ts';

const hour = 3_600_000;
const start = Math.floor((Date.now() - 3 * hour) / hour) * hour;
const config = { ANALYTICS_LOG_RETENTION_DAYS: 30, ANALYTICS_INGEST_MAX_EVENTS: 1000, ANALYTICS_INGEST_MAX_BYTES: 4 * 1024 * 1024 };

describe.each(backends)('analytics service on $name', (backend) => {
  const token = randomBytes(32).toString('base64url');
  let service: AnalyticsService;
  let issuer: TestTokenIssuer;
  let cleanup: () => Promise<void>;
  let db: StoreDb;

  beforeAll(async () => {
    issuer = await createTestTokenIssuer();
    const opened = await backend.open();
    cleanup = opened.cleanup;
    db = opened.store.db;
    service = createAnalyticsService({
      store: opened.store,
      secrets: createSecretsProvider({ env: { GHOSTPAY_SECRET_ANALYTICS_INGEST_TOKEN: token } }),
      logger: createLogger({ service: 'analytics', level: 'silent' }),
      verifier: issuer.verifier,
      config,
    });
    await service.start(0);
  });
  afterAll(async () => {
    await service?.close();
    await cleanup?.();
  });

  const ingest = (events: unknown[], authorization = `Bearer ${token}`) =>
    fetch(`${service.url}/internal/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization },
      body: JSON.stringify({ events }),
    });

  const graphql = async (query: string, variables: Record<string, unknown>, role: 'admin' | 'merchant' = 'admin') => {
    const response = await fetch(`${service.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: await issuer.bearer({ userId: 'usr_admin', role }) },
      body: JSON.stringify({ query, variables }),
    });
    return (await response.json()) as { data?: Record<string, unknown>; errors?: { message: string; extensions: { code: string } }[] };
  };

  it('refuses ingest without the shared token or with a wrong one', async () => {
    const events = randomEvents(3, start, hour, 7);
    expect((await ingest(events, '')).status).toBe(401);
    expect((await ingest(events, `Bearer ${token}x`)).status).toBe(401);
    expect((await ingest(events, `Bearer ${randomBytes(32).toString('base64url')}`)).status).toBe(401);
    const log = await graphql('query { requestLog(first: 10) { edges { node { id } } } }', {});
    expect(log.data?.requestLog).toEqual({ edges: [] });
  });

  it('answers another method than POST on the ingest path with 405, an Allow header and a code from the closed list', async () => {
    for (const method of ['GET', 'PUT', 'DELETE']) {
      const response = await fetch(`${service.url}/internal/events`, { method, headers: { authorization: `Bearer ${token}` } });
      expect(response.status, method).toBe(405);
      expect(response.headers.get('allow'), method).toBe('POST');
      const { error } = (await response.json()) as { error: { code: string } };
      expect(isErrorCode(error.code), error.code).toBe(true);
      expect(error.code).toBe('BAD_USER_INPUT');
    }
  });

  it('refuses a batch over the byte limit with 413, closing the connection, and stores none of it', async () => {
    const events = randomEvents(3, start, hour, 13).map((e) => ({
      ...e,
      apiKeyId: 'key_oversized',
      pad: 'x'.repeat(config.ANALYTICS_INGEST_MAX_BYTES),
    }));
    const response = await ingest(events);
    expect(response.status).toBe(413);
    expect(response.headers.get('connection')).toBe('close');
    expect(((await response.json()) as { error: { code: string } }).error.code).toBe('PAYLOAD_TOO_LARGE');
    const usage = await graphql(
      'query ($from: DateTime!, $to: DateTime!) { usage(apiKeyId: "key_oversized", from: $from, to: $to, granularity: HOUR) { requests } }',
      { from: new Date(start).toISOString(), to: new Date(start + hour).toISOString() },
    );
    expect(usage.errors).toBeUndefined();
    expect(usage.data?.usage).toEqual([]);
  });

  it('stores valid events, skips invalid ones and answers admin queries over GraphQL', async () => {
    const events = randomEvents(120, start, hour, 11).map((e) => ({ ...e, apiKeyId: 'key_graphql' }));
    const response = await ingest([...events, { not: 'an event' }]);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ stored: 120, duplicates: 0, rejected: 1 });

    const usage = await graphql(
      'query ($from: DateTime!, $to: DateTime!) { usage(apiKeyId: "key_graphql", from: $from, to: $to, granularity: HOUR) { start requests errors } }',
      { from: new Date(start).toISOString(), to: new Date(start + hour).toISOString() },
    );
    expect(usage.errors).toBeUndefined();
    expect(usage.data?.usage).toEqual([
      {
        start: new Date(start).toISOString(),
        requests: 120,
        errors: events.filter((e) => e.errorCodes.length > 0 || e.httpStatus >= 400).length,
      },
    ]);

    const entity = await graphql(
      'query ($from: DateTime!, $to: DateTime!) { _entities(representations: [{ __typename: "ApiKey", id: "key_graphql" }]) { ... on ApiKey { id usage(from: $from, to: $to, granularity: DAY) { requests } } } }',
      { from: new Date(start).toISOString(), to: new Date(start + hour).toISOString() },
    );
    expect(entity.data?._entities).toEqual([{ id: 'key_graphql', usage: [{ requests: 120 }] }]);
  });

  it('redacts secrets again at ingest', async () => {
    const planted: RequestEvent = {
      ...randomEvents(1, start, hour, 13)[0]!,
      apiKeyId: 'key_planted',
      operationName: 'Pay 4111 1111 1111 1111',
      userId: `gp_${randomBytes(9).toString('hex')}_${randomBytes(20).toString('hex')}`,
      traceId: 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1c3IifQ.c2ln',
    };
    expect((await ingest([planted])).status).toBe(200);
    const log = await graphql(
      'query { requestLog(first: 5, filter: { apiKeyId: "key_planted" }) { edges { node { id operationName userId traceId } } } }',
      {},
    );
    const nodes = (log.data!.requestLog as { edges: { node: Record<string, unknown> }[] }).edges.map((e) => e.node);
    expect(nodes).toHaveLength(1);
    expect(nodes[0]).toEqual({ id: planted.eventId, operationName: null, userId: null, traceId: null });
  });

  it('stores an event at its own time when the timestamp has more fractional digits than milliseconds', async () => {
    // Valid ISO 8601, but its digit run "00.4111111111111111" holds a Luhn-valid 16 digits:
    // redaction dropped the timestamp as text that looks like a PAN, and the event was stored
    // (and counted) at 1970-01-01, where the next TTL sweep deleted its log at once.
    const at = start + 10 * 60_000;
    const [event] = randomEvents(1, start, hour, 17).map((e) => ({
      ...e,
      apiKeyId: 'key_precise',
      timestamp: new Date(at).toISOString().replace('.000Z', '.4111111111111111Z'),
    }));
    expect(await (await ingest([event])).json()).toEqual({ stored: 1, duplicates: 0, rejected: 0 });
    const usage = await graphql(
      'query ($from: DateTime!, $to: DateTime!) { usage(apiKeyId: "key_precise", from: $from, to: $to, granularity: HOUR) { start requests } }',
      { from: new Date(start).toISOString(), to: new Date(start + hour).toISOString() },
    );
    expect(usage.data?.usage).toEqual([{ start: new Date(start).toISOString(), requests: 1 }]);
    const log = await graphql('query { requestLog(first: 1, filter: { apiKeyId: "key_precise" }) { edges { node { timestamp } } } }', {});
    expect(log.data?.requestLog).toEqual({ edges: [{ node: { timestamp: new Date(at + 411).toISOString() } }] });
  });

  it('reports totals above 2^31 exactly, as JSON numbers, instead of an internal error', async () => {
    // 93 days at 300 requests a second is 2.4 billion: past Int's 2,147,483,647. Written straight
    // to the per-minute documents, as months of ingest would leave them.
    const minute = new Date(start - 10 * 86_400_000);
    const [requests, errors] = [3_000_000_000, 2_200_000_000];
    const total = 2 ** 53 - 1;
    await db.collection('usage').bulkWrite(
      [
        {
          updateOne: {
            filter: { _id: `key_huge|${minute.getTime()}` },
            update: { $setOnInsert: { apiKeyId: 'key_huge', minute }, $inc: { requests, errors, latencyMsTotal: requests * 2 } },
            upsert: true,
          },
        },
      ],
      { ordered: false },
    );
    await db.collection('performance').bulkWrite(
      [
        {
          updateOne: {
            filter: { _id: `query|Huge|${minute.getTime()}` },
            update: {
              $setOnInsert: { operationName: 'Huge', operationType: 'query', minute },
              $inc: { requests: total, errors, latencyMsTotal: 1, [`buckets.${bucketField(bucketIndexFor(2))}`]: total },
              $max: { latencyMsMax: 2 },
            },
            upsert: true,
          },
        },
      ],
      { ordered: false },
    );
    const range = { from: new Date(minute.getTime()).toISOString(), to: new Date(minute.getTime() + 60_000).toISOString() };
    const response = await fetch(`${service.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: await issuer.bearer({ userId: 'usr_admin', role: 'admin' }) },
      body: JSON.stringify({
        query: `query ($from: DateTime!, $to: DateTime!) {
          usage(apiKeyId: "key_huge", from: $from, to: $to, granularity: DAY) { requests errors }
          errorRate(from: $from, to: $to) { requests errors }
          topOperations(from: $from, to: $to, limit: 1) { operationName requests errors }
          latency(operation: "Huge", from: $from, to: $to) { count }
        }`,
        variables: range,
      }),
    });
    const text = await response.text();
    const result = JSON.parse(text) as { data?: Record<string, unknown>; errors?: unknown[] };
    expect(result.errors).toBeUndefined();
    expect(result.data).toEqual({
      usage: [{ requests, errors }],
      errorRate: { requests: total, errors },
      topOperations: [{ operationName: 'Huge', requests: total, errors }],
      latency: { count: total },
    });
    // Numbers, not strings, and exact to the last digit.
    expect(text).toContain('"count":9007199254740991');
    expect(text).toContain('"requests":3000000000');
  });

  it('refuses an event whose id is longer than the limit instead of cutting two ids into one', async () => {
    const prefix = 'e'.repeat(requestEventLimits.eventId);
    const [a, b] = randomEvents(2, start, hour, 17).map((e) => ({ ...e, apiKeyId: 'key_long_ids' }));
    const refused = await ingest([
      { ...a, eventId: `${prefix}A` },
      { ...b, eventId: `${prefix}B` },
    ]);
    expect(await refused.json()).toEqual({ stored: 0, duplicates: 0, rejected: 2 });
    // At the limit, ids that differ only in their last character are two events.
    const accepted = await ingest([
      { ...a, eventId: `${prefix.slice(1)}A` },
      { ...b, eventId: `${prefix.slice(1)}B` },
    ]);
    expect(await accepted.json()).toEqual({ stored: 2, duplicates: 0, rejected: 0 });
  });

  it('refuses an API key id or user id over the limit instead of counting two keys as one', async () => {
    const usageOf = async (apiKeyId: string) => {
      const result = await graphql(
        'query ($key: ID!, $from: DateTime!, $to: DateTime!) { usage(apiKeyId: $key, from: $from, to: $to, granularity: DAY) { requests } }',
        { key: apiKeyId, from: new Date(start).toISOString(), to: new Date(start + hour).toISOString() },
      );
      expect(result.errors).toBeUndefined();
      return ((result.data?.usage ?? []) as { requests: number }[]).reduce((sum, p) => sum + p.requests, 0);
    };
    const keyPrefix = 'k'.repeat(maxIdLength);
    const userPrefix = 'u'.repeat(maxIdLength);
    const [a, b, c] = randomEvents(3, start, hour, 23);
    const refused = await ingest([
      { ...a, apiKeyId: `${keyPrefix}A` },
      { ...b, apiKeyId: `${keyPrefix}B` },
      { ...c, apiKeyId: 'key_long_user', userId: `${userPrefix}C` },
    ]);
    expect(await refused.json()).toEqual({ stored: 0, duplicates: 0, rejected: 3 });
    // Cut to their first 100 characters, the two keys were one key with two requests.
    expect(await usageOf(keyPrefix)).toBe(0);
    // At the limit, ids that differ only in their last character are two keys.
    const [d, e] = randomEvents(2, start, hour, 29);
    const accepted = await ingest([
      { ...d, apiKeyId: `${keyPrefix.slice(1)}D` },
      { ...e, apiKeyId: `${keyPrefix.slice(1)}E` },
    ]);
    expect(await accepted.json()).toEqual({ stored: 2, duplicates: 0, rejected: 0 });
    expect(await usageOf(`${keyPrefix.slice(1)}D`)).toBe(1);
    expect(await usageOf(`${keyPrefix.slice(1)}E`)).toBe(1);
  });

  it('refuses events timestamped ahead of the clock or older than the log retention', async () => {
    const now = Date.now();
    const retentionMs = config.ANALYTICS_LOG_RETENTION_DAYS * 86_400_000;
    const at = (ms: number) => new Date(ms).toISOString();
    const [ahead, farAhead, old, recentEnough, skewed] = randomEvents(5, start, hour, 31);
    const response = await ingest([
      { ...ahead, timestamp: at(now + maxEventClockSkewMs + 60_000) },
      { ...farAhead, timestamp: '9999-12-31T23:59:59.000Z' },
      { ...old, timestamp: at(now - retentionMs - 60_000) },
      { ...recentEnough, timestamp: at(now - retentionMs + 3_600_000) },
      { ...skewed, timestamp: at(now + 60_000) },
    ]);
    expect(await response.json()).toEqual({ stored: 2, duplicates: 0, rejected: 3 });
    const log = await graphql('query { requestLog(first: 500) { edges { node { id } } } }', {});
    const ids = ((log.data?.requestLog ?? { edges: [] }) as { edges: { node: { id: string } }[] }).edges.map((edge) => edge.node.id);
    expect(ids).toEqual(expect.arrayContaining([recentEnough!.eventId, skewed!.eventId]));
    expect(ids).not.toContain(ahead!.eventId);
    expect(ids).not.toContain(farAhead!.eventId);
    expect(ids).not.toContain(old!.eventId);
  });

  it('refuses a subgraph timing past a day, as it refuses such a latency', async () => {
    const [event] = randomEvents(1, start, hour, 37);
    const response = await ingest([{ ...event, subgraphTimings: [{ subgraph: 'cards', ms: 1e300 }] }]);
    expect(await response.json()).toEqual({ stored: 0, duplicates: 0, rejected: 1 });
  });

  it('counts an operation with a name over 200 characters and finds it by its full name', async () => {
    // The last two share their first 1,000 characters: they stay two operations.
    const names = [`Op${'x'.repeat(249)}`, `Op${'y'.repeat(1_500)}`, `Op${'y'.repeat(1_000)}z`];
    const events = randomEvents(3, start, hour, 19).map((e, i) => ({ ...e, operationName: names[i]!, apiKeyId: 'key_long_names' }));
    expect(await (await ingest(events)).json()).toEqual({ stored: 3, duplicates: 0, rejected: 0 });
    for (const name of names) {
      const result = await graphql(
        `query ($name: String!, $from: DateTime!, $to: DateTime!) {
          latency(operation: $name, from: $from, to: $to) { operationName count }
          requestLog(first: 5, filter: { operationName: $name }) { edges { node { operationName } } }
        }`,
        { name, from: new Date(start).toISOString(), to: new Date(start + hour).toISOString() },
      );
      expect(result.errors).toBeUndefined();
      expect(result.data).toEqual({
        latency: { operationName: boundOperationName(name), count: 1 },
        requestLog: { edges: [{ node: { operationName: boundOperationName(name) } }] },
      });
    }
  });

  it('lets only holders of analytics:read query analytics', async () => {
    const result = await graphql('query { errorRate(from: "2026-01-01T00:00:00Z", to: "2026-01-02T00:00:00Z") { rate } }', {}, 'merchant');
    expect(result.errors?.[0]?.extensions.code).toBe('FORBIDDEN');
  });

  it('rejects a reversed range, an oversized page and a foreign cursor as bad user input', async () => {
    const reversed = await graphql('query { errorRate(from: "2026-01-02T00:00:00Z", to: "2026-01-01T00:00:00Z") { rate } }', {});
    expect(reversed.errors?.[0]?.extensions.code).toBe('BAD_USER_INPUT');
    const page = await graphql('query { requestLog(first: 100000) { edges { cursor } } }', {});
    expect(page.errors?.[0]?.extensions.code).toBe('BAD_USER_INPUT');
    const cursor = await graphql('query { requestLog(first: 5, after: "bm90LWEtY3Vyc29y") { edges { cursor } } }', {});
    expect(cursor.errors?.[0]?.extensions.code).toBe('BAD_USER_INPUT');
    // Our shape, but a time no Date holds.
    const outOfRange = Buffer.from(JSON.stringify([9e15, 'x'])).toString('base64url');
    const forged = await graphql('query ($after: String) { requestLog(first: 5, after: $after) { edges { cursor } } }', {
      after: outOfRange,
    });
    expect(forged.errors?.[0]?.extensions.code).toBe('BAD_USER_INPUT');
  });

  it('refuses a date that does not exist through the scalar error path, in a variable and in a literal', async () => {
    // 2026-02-30 used to be read as March 2: the range silently covered other days.
    const malformed = await graphql('query { errorRate(from: "not a date", to: "2026-03-05T00:00:00Z") { requests } }', {});
    const literal = await graphql('query { errorRate(from: "2026-02-30T00:00:00Z", to: "2026-03-05T00:00:00Z") { requests } }', {});
    expect(literal.data).toBeUndefined();
    // Apollo reports a literal the scalar refuses as a validation failure, as for any malformed one.
    expect(literal.errors?.[0]?.extensions.code).toBe(malformed.errors?.[0]?.extensions.code);
    expect(literal.errors?.[0]?.extensions.code).toBe('GRAPHQL_VALIDATION_FAILED');
    expect(literal.errors?.[0]?.message).toMatch(/real calendar date/);
    const variable = await graphql('query ($from: DateTime!) { errorRate(from: $from, to: "2026-05-05T00:00:00Z") { requests } }', {
      from: '2026-04-31T00:00:00Z',
    });
    expect(variable.data).toBeUndefined();
    expect(variable.errors?.[0]?.extensions.code).toBe('BAD_USER_INPUT');
    expect(variable.errors?.[0]?.message).toMatch(/real calendar date/);
  });
});

describe('analytics service shutdown', () => {
  it('stops waiting for a request in flight after SHUTDOWN_TIMEOUT_MS', async () => {
    const [embedded] = backends;
    const opened = await embedded!.open();
    const issuer = await createTestTokenIssuer();
    // Past the test's own timeout if close() waited platform's default 10 s instead.
    const service = createAnalyticsService({
      store: opened.store,
      secrets: createSecretsProvider({ env: { GHOSTPAY_SECRET_ANALYTICS_INGEST_TOKEN: 'x'.repeat(32) } }),
      logger: createLogger({ service: 'analytics', level: 'silent' }),
      verifier: issuer.verifier,
      config: { ...config, SHUTDOWN_TIMEOUT_MS: 200 },
    });
    try {
      await service.start(0);
      const { port } = new URL(service.url);
      // A request whose body never finishes: it stays in flight until the server gives up on it.
      const socket = connect(Number(port), '127.0.0.1');
      socket.on('error', () => {}); // reset by the server when it gives up: the point of the test
      await once(socket, 'connect');
      const arrived = once(service.server, 'request');
      socket.write('POST /graphql HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{"query":');
      let answer = '';
      socket.on('data', (chunk: Buffer) => {
        answer += chunk.toString();
      });
      const socketClosed = new Promise((resolve) => socket.once('close', resolve));
      await arrived;
      await service.close();
      await socketClosed;
      // Cut off, never answered: the request was still in flight when the bound was reached.
      expect(answer).toBe('');
    } finally {
      await opened.cleanup();
    }
  }, 8_000);
});
