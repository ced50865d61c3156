import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Registry, type RequestEvent } from '@ghostpay/platform';
import { createTestTokenIssuer, freePort, startLoopbackServer, testAudience, testIssuer } from '@ghostpay/test-support';
import { afterEach, describe, expect, it } from 'vitest';
import { type AnalyticsEmitter, createAnalyticsEmitter } from '../src/analytics-emitter.ts';

const token = randomBytes(24).toString('base64url');

function event(n: number, overrides: Partial<RequestEvent> = {}): RequestEvent {
  return {
    timestamp: new Date(Date.now() - 60_000).toISOString(),
    requestId: `req_${n}`,
    traceId: null,
    operationName: 'ChargeCard',
    operationType: 'mutation',
    apiKeyId: 'key_emitter',
    userId: 'usr_1',
    role: 'merchant',
    httpStatus: 200,
    errorCodes: [],
    latencyMs: 12,
    subgraphTimings: [{ subgraph: 'charges', ms: 8 }],
    ...overrides,
  };
}

async function until(condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A real HTTP ingest endpoint that records what arrives; `status` decides the answer. */
async function startRecorder(port = 0) {
  const batches: { authorization: string | undefined; events: RequestEvent[] }[] = [];
  const state = { status: 200 };
  const server: Server = createServer(async (req: IncomingMessage, res) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    if (state.status === 200) {
      batches.push({ authorization: req.headers.authorization, events: JSON.parse(Buffer.concat(chunks).toString()).events });
    }
    res.writeHead(state.status, { 'content-type': 'application/json' }).end('{}');
  });
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  const actualPort = (server.address() as AddressInfo).port;
  return {
    batches,
    state,
    port: actualPort,
    url: `http://127.0.0.1:${actualPort}/internal/events`,
    received: () => batches.flatMap((b) => b.events),
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function emitterFor(url: string, options: Partial<Parameters<typeof createAnalyticsEmitter>[0]> = {}): AnalyticsEmitter {
  const emitter = createAnalyticsEmitter({
    url,
    token: () => token,
    flushIntervalMs: 20,
    retryBaseMs: 10,
    retryMaxMs: 50,
    requestTimeoutMs: 1_000,
    ...options,
  });
  cleanups.push(() => emitter.close());
  return emitter;
}

describe('analytics emitter', () => {
  it('sends full batches at once and the rest on the interval, with the bearer token', async () => {
    const recorder = await startRecorder();
    cleanups.push(recorder.close);
    const emitter = emitterFor(recorder.url, { batchSize: 10, flushIntervalMs: 200 });
    for (let i = 0; i < 25; i++) emitter.emit(event(i));
    // Acknowledged, not only received: the emitter counts a batch once the response is in.
    await until(() => emitter.metrics.sent === 25, 'all events');
    expect(recorder.batches.map((b) => b.events.length)).toEqual([10, 10, 5]);
    expect(recorder.batches.every((b) => b.authorization === `Bearer ${token}`)).toBe(true);
    expect(recorder.received().map((e) => e.requestId)).toEqual(Array.from({ length: 25 }, (_, i) => `req_${i}`));
    expect(emitter.metrics).toMatchObject({ sent: 25, dropped: 0, buffered: 0 });
  });

  it('emits synchronously and in constant work: it reads nothing from the event and sends nothing inside the call', async () => {
    const recorder = await startRecorder();
    cleanups.push(recorder.close);
    let fetchCalls = 0;
    const emitter = emitterFor(recorder.url, {
      batchSize: 5,
      maxBufferSize: 100,
      fetch: (...args) => {
        fetchCalls++;
        return fetch(...args);
      },
    });
    let reads = 0;
    const watched = new Proxy(event(1), {
      get(target, key, receiver) {
        reads++;
        return Reflect.get(target, key, receiver);
      },
    });
    for (let i = 0; i < 1_000; i++) {
      const returned: unknown = emitter.emit(watched);
      expect(returned).toBeUndefined();
    }
    // Redaction, serialisation and I/O happen after the caller's turn, never inside emit.
    expect(reads).toBe(0);
    expect(fetchCalls).toBe(0);
    // The buffer is a ring: 1000 emits into 100 slots drop exactly 900, one per emit, oldest first.
    expect(emitter.metrics).toMatchObject({ buffered: 100, dropped: 900 });
    await emitter.flush();
    expect(recorder.received()).toHaveLength(100);
  });

  it('never throws into the caller, whatever it is given', () => {
    const emitter = emitterFor('http://127.0.0.1:9/internal/events');
    expect(() => emitter.emit(undefined as unknown as RequestEvent)).not.toThrow();
    expect(() => emitter.emit(null as unknown as RequestEvent)).not.toThrow();
  });

  it('redacts before sending: no PAN, JWT, API key or unknown field leaves the router', async () => {
    const recorder = await startRecorder();
    cleanups.push(recorder.close);
    const emitter = emitterFor(recorder.url);
    const leaky = {
      ...event(1, {
        operationName: 'Charge 4242 4242 4242 4242',
        userId: 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl',
        apiKeyId: 'gp_AbCdEfGhIjKl_0123456789abcdefghijklmnopqrstuvwxyzABCDEFG',
      }),
      variables: { cvc: '123' },
    };
    emitter.emit(leaky as RequestEvent);
    await emitter.flush();
    const [sent] = recorder.received();
    expect(sent).toMatchObject({ operationName: null, userId: null, apiKeyId: null, requestId: 'req_1' });
    expect(sent).not.toHaveProperty('variables');
    expect(sent?.eventId).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('keeps the newest events while analytics is down, counts what it drops, and delivers after it comes back', async () => {
    const recorder = await startRecorder();
    const port = recorder.port;
    await recorder.close();
    const registry = new Registry();
    const emitter = emitterFor(`http://127.0.0.1:${port}/internal/events`, { batchSize: 10, maxBufferSize: 50, registry });
    for (let i = 0; i < 120; i++) emitter.emit(event(i));
    await until(() => emitter.metrics.failedAttempts >= 3, 'failed attempts');
    expect(emitter.metrics).toMatchObject({ sent: 0, dropped: 70 });
    // 50 kept: all buffered, or 10 of them in a retry attempt at this instant.
    expect([40, 50]).toContain(emitter.metrics.buffered);
    const metrics = await registry.metrics();
    expect(metrics).toContain('analytics_events_dropped_total 70');
    expect(metrics).toContain('analytics_events_sent_total 0');

    const back = await startRecorder(port);
    cleanups.push(back.close);
    await until(() => emitter.metrics.sent === 50, 'redelivery', 15_000);
    // The oldest 70 were dropped; the 50 newest arrive once each, in order.
    expect(back.received().map((e) => e.requestId)).toEqual(Array.from({ length: 50 }, (_, i) => `req_${70 + i}`));
    expect(await registry.metrics()).toContain('analytics_events_sent_total 50');
  });

  it('retries a failed batch with the same event ids, so the service can ignore a duplicate', async () => {
    const recorder = await startRecorder();
    cleanups.push(recorder.close);
    recorder.state.status = 503;
    const emitter = emitterFor(recorder.url, { batchSize: 5 });
    for (let i = 0; i < 5; i++) emitter.emit(event(i));
    await until(() => emitter.metrics.failedAttempts >= 2, 'a retry');
    recorder.state.status = 200;
    await until(() => emitter.metrics.sent === 5, 'delivery');
    const ids = recorder.received().map((e) => e.eventId);
    expect(new Set(ids).size).toBe(5);
    expect(emitter.metrics.dropped).toBe(0);
  });

  it('drops a batch the service rejects as malformed instead of retrying it forever', async () => {
    const recorder = await startRecorder();
    cleanups.push(recorder.close);
    recorder.state.status = 400;
    const emitter = emitterFor(recorder.url, { batchSize: 5 });
    for (let i = 0; i < 5; i++) emitter.emit(event(i));
    await emitter.flush();
    expect(emitter.metrics).toMatchObject({ sent: 0, dropped: 5, buffered: 0 });
  });
});

/** The real analytics service as its own process, as in production. */
describe('analytics emitter against the analytics service', () => {
  const root = resolve(import.meta.dirname, '../..');

  it('delivers to the analytics service, survives it stopping, and delivers again after it restarts', async () => {
    const issuer = await createTestTokenIssuer();
    const jwks = await startLoopbackServer((_req, res) =>
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(issuer.jwks)),
    );
    cleanups.push(() => jwks.close());
    const dataDir = mkdtempSync(join(tmpdir(), 'ghostpay-emitter-'));
    cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;

    let child: ChildProcess | undefined;
    const start = async () => {
      const { MONGODB_URL: _ignored, ...env } = process.env;
      child = spawn(join(root, 'node_modules/.bin/node'), ['subgraphs/analytics/src/main.ts'], {
        cwd: root,
        env: {
          ...env,
          ANALYTICS_PORT: String(port),
          GHOSTPAY_DATA_DIR: dataDir,
          GHOSTPAY_SECRET_ANALYTICS_INGEST_TOKEN: token,
          JWKS_URL: `${jwks.url}/jwks.json`,
          JWT_ISSUER: testIssuer,
          JWT_AUDIENCE: testAudience,
          LOG_LEVEL: 'silent',
        },
        stdio: 'ignore',
      });
      await until(async () => (await fetch(`${base}/readyz`).catch(() => undefined))?.ok === true, 'analytics to start', 20_000);
    };
    const stop = async () => {
      const exited = new Promise((r) => child?.once('exit', r));
      child?.kill('SIGTERM');
      await exited;
    };
    cleanups.push(async () => {
      if (child && child.exitCode === null) await stop();
    });

    await start();
    const emitter = emitterFor(`${base}/internal/events`, { batchSize: 20, maxBufferSize: 1_000 });
    for (let i = 0; i < 30; i++) emitter.emit(event(i));
    await until(() => emitter.metrics.sent === 30, 'first delivery');

    await stop();
    for (let i = 30; i < 70; i++) emitter.emit(event(i));
    await until(() => emitter.metrics.failedAttempts >= 2, 'failures while analytics is down');
    expect(emitter.metrics).toMatchObject({ sent: 30, dropped: 0 });
    expect([20, 40]).toContain(emitter.metrics.buffered);

    await start();
    await until(() => emitter.metrics.sent === 70, 'delivery after restart', 20_000);

    const response = await fetch(`${base}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: await issuer.bearer({ userId: 'usr_admin', role: 'admin' }) },
      body: JSON.stringify({ query: '{ requestLog(first: 500, filter: { apiKeyId: "key_emitter" }) { edges { node { requestId } } } }' }),
    });
    const body = (await response.json()) as { data: { requestLog: { edges: { node: { requestId: string } }[] } } };
    const stored = body.data.requestLog.edges.map((e) => e.node.requestId).sort();
    expect(stored).toEqual(Array.from({ length: 70 }, (_, i) => `req_${i}`).sort());
  }, 60_000);
});
