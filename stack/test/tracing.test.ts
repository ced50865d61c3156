import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger, startTelemetry, type Telemetry, type TelemetryOptions } from '@ghostpay/platform';
import { freshDatabase, type TestDatabase } from '@ghostpay/test-support';
import { type Attributes, SpanKind, trace } from '@opentelemetry/api';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { Stack } from '../src/index.ts';

type SpanProcessor = NonNullable<TelemetryOptions['spanProcessors']>[number];
type FinishedSpan = Parameters<SpanProcessor['onEnd']>[0];

/** Keeps every finished span in memory (the SDK's InMemorySpanExporter, without depending on its package here). */
const finished: FinishedSpan[] = [];
const recorder: SpanProcessor = {
  onStart() {},
  onEnd(span) {
    finished.push(span);
  },
  forceFlush: async () => {},
  shutdown: async () => {},
};

/** POSTs JSON over a bare socket (no http/undici client, so nothing injects a traceparent); resolves with the raw response. */
function rawPost(url: string, headers: Record<string, string>, body: unknown): Promise<string> {
  const { hostname, port, pathname } = new URL(url);
  const payload = JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname);
    let data = '';
    socket.setTimeout(10_000, () => socket.destroy(new Error('raw request timed out')));
    socket.on('data', (chunk) => {
      data += chunk.toString('utf8');
    });
    socket.on('end', () => resolve(data));
    socket.on('error', reject);
    const lines = [
      `POST ${pathname} HTTP/1.1`,
      `host: ${hostname}:${port}`,
      'connection: close',
      'content-type: application/json',
      `content-length: ${Buffer.byteLength(payload)}`,
      ...Object.entries(headers).map(([name, value]) => `${name}: ${value}`),
    ];
    socket.write(`${lines.join('\r\n')}\r\n\r\n${payload}`);
  });
}

const dataDir = mkdtempSync(join(tmpdir(), 'ghostpay-tracing-'));
const logLines: Array<Record<string, unknown>> = [];
let telemetry: Telemetry;
let database: TestDatabase;
let stack: Stack;
/** The trace of the createCharge in the first test. */
let chargeTraceId = '';

// PGlite runs in-process and makes no pg driver calls: the database span needs the real PostgreSQL.
describe.skipIf(!inject('postgresAdminUrl'))('one trace per request, router → subgraph → PostgreSQL', () => {
  beforeAll(async () => {
    telemetry = startTelemetry({ serviceName: 'ghostpay-stack', env: {}, spanProcessors: [recorder] });
    // Loaded after the SDK started, as stack/src/main.ts does.
    const { startStack } = await import('../src/start-stack.ts');
    database = await freshDatabase();
    const destination = { write: (line: string) => void logLines.push(JSON.parse(line)) };
    const logger = createLogger({ service: 'stack-test', level: 'info', destination });
    stack = await startStack({
      dataDir,
      randomPorts: true,
      logger,
      log: { destination },
      env: { ...process.env, DATABASE_URL: database.url, REDIS_URL: undefined, MONGODB_URL: undefined, SECRETS_DIR: undefined },
    });
  }, 120_000);

  afterAll(async () => {
    await stack?.close();
    await database?.close();
    await telemetry?.shutdown();
    rmSync(dataDir, { recursive: true, force: true });
  });

  async function graphql(query: string, variables: Record<string, unknown>, token?: string) {
    const response = await fetch(stack.urls.graphql, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify({ query, variables }),
    });
    const body = (await response.json()) as { data?: Record<string, Record<string, unknown>>; errors?: unknown[] };
    expect(body.errors).toBeUndefined();
    return body.data ?? {};
  }

  const portOf = (url: string) => Number(new URL(url).port);
  const num = (attributes: Attributes, ...names: string[]) => names.map((n) => attributes[n]).find((v) => v !== undefined);
  const listenPort = (span: FinishedSpan) => Number(num(span.attributes, 'server.port', 'net.host.port', 'url.port'));
  const path = (span: FinishedSpan) => String(num(span.attributes, 'url.path', 'http.target') ?? '');

  it('covers the router, the charges subgraph (child through traceparent) and a pg query for a createCharge', async () => {
    const { createToken } = await graphql('mutation ($key: String!) { createToken(apiKey: $key) { accessToken } }', {
      key: stack.credentials.merchant.apiKey,
    });
    const token = createToken?.accessToken as string;
    const { issueCard } = await graphql(
      'mutation ($input: IssueCardInput!) { issueCard(input: $input) { id } }',
      { input: { userId: stack.credentials.user.userId, amount: 1200, currency: 'USD' } },
      token,
    );

    // The test's own span is the trace root; the fetch below carries it to the router as traceparent.
    const { traceId, createCharge } = await trace.getTracer('tracing-test').startActiveSpan('test: createCharge', async (span) => {
      const data = await graphql(
        'mutation TracedCharge($input: CreateChargeInput!, $key: String!) { createCharge(input: $input, idempotencyKey: $key) { id status } }',
        { input: { cardId: issueCard?.id, amount: 1200, currency: 'USD' }, key: 'tracing-1' },
        token,
      );
      span.end();
      return { traceId: span.spanContext().traceId, createCharge: data.createCharge };
    });
    expect(createCharge).toMatchObject({ status: 'AUTHORIZED' });
    chargeTraceId = traceId;

    // Server spans end when the response is written; give the last ones a moment.
    const deadline = Date.now() + 5_000;
    const spansOfTrace = () => finished.filter((s) => s.spanContext().traceId === traceId);
    const chargesPort = portOf(stack.urls.charges);
    while (Date.now() < deadline && !spansOfTrace().some((s) => s.kind === SpanKind.SERVER && listenPort(s) === chargesPort)) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const spans = spansOfTrace();
    const listed = spans.map((s) => `${s.name}/${SpanKind[s.kind]}:${listenPort(s) || ''}${path(s)}`).join(', ');
    const byId = new Map(spans.map((s) => [s.spanContext().spanId, s]));
    const ancestors = (span: FinishedSpan) => {
      const chain: FinishedSpan[] = [];
      for (let parent = byId.get(span.parentSpanContext?.spanId ?? ''); parent; parent = byId.get(parent.parentSpanContext?.spanId ?? '')) {
        chain.push(parent);
      }
      return chain;
    };

    const router = spans.find((s) => s.kind === SpanKind.SERVER && listenPort(s) === portOf(stack.urls.router) && path(s) === '/graphql');
    expect(router, `a router server span for /graphql: ${listed}`).toBeDefined();

    const charges = spans.find((s) => s.kind === SpanKind.SERVER && listenPort(s) === chargesPort);
    expect(charges, `a charges subgraph server span: ${listed}`).toBeDefined();
    // The subgraph continued the router's trace: its parent is the router's client span for the fetch.
    const chargesParent = byId.get(charges?.parentSpanContext?.spanId ?? '');
    expect(chargesParent?.kind, listed).toBe(SpanKind.CLIENT);
    expect(ancestors(charges as FinishedSpan)).toContain(router);

    const queries = spans.filter((s) => s.attributes['db.system.name'] === 'postgresql' || s.attributes['db.system'] === 'postgresql');
    expect(queries.length, `pg spans in the trace: ${listed}`).toBeGreaterThan(0);
    expect(
      queries.some((q) => ancestors(q).includes(charges as FinishedSpan)),
      `a pg span under the charges server span: ${listed}`,
    ).toBe(true);
  });

  it('stamps the trace id on the log lines written while serving the charge', () => {
    const createChargeLine = logLines.find((line) => line.msg === 'createCharge');
    expect(createChargeLine?.trace_id).toMatch(/^[0-9a-f]{32}$/);
    expect(finished.some((s) => s.spanContext().traceId === createChargeLine?.trace_id && s.kind === SpanKind.SERVER)).toBe(true);
  });

  it('hands the router’s trace id to analytics in the request event, also when the caller sent no traceparent', async () => {
    const { createToken } = await graphql('mutation ($key: String!) { createToken(apiKey: $key) { accessToken } }', {
      key: stack.credentials.admin.apiKey,
    });
    const adminToken = createToken?.accessToken as string;
    // Over a bare socket, so no client instrumentation adds a traceparent: the router starts the trace.
    const raw = await rawPost(
      stack.urls.graphql,
      { authorization: `Bearer ${adminToken}` },
      { query: 'query UntracedCaller { me { id } }' },
    );
    expect(raw).toMatch(/^HTTP\/1\.1 200/);
    const routerPort = portOf(stack.urls.router);
    const rootSpan = finished.find(
      (s) => s.kind === SpanKind.SERVER && listenPort(s) === routerPort && !s.parentSpanContext && path(s) === '/graphql',
    );
    expect(rootSpan, 'a router server span that starts its own trace').toBeDefined();

    const traceIdsOf = async (operationName: string) => {
      const { requestLog } = await graphql(
        'query ($name: String!) { requestLog(filter: { operationName: $name }) { edges { node { traceId } } } }',
        { name: operationName },
        adminToken,
      );
      return ((requestLog?.edges ?? []) as Array<{ node: { traceId: unknown } }>).map((edge) => edge.node.traceId);
    };
    // The emitter ships events in batches about once a second.
    const deadline = Date.now() + 10_000;
    while (
      Date.now() < deadline &&
      ((await traceIdsOf('UntracedCaller')).length === 0 || (await traceIdsOf('TracedCharge')).length === 0)
    ) {
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    expect(await traceIdsOf('UntracedCaller')).toEqual([rootSpan?.spanContext().traceId]);
    expect(chargeTraceId).toMatch(/^[0-9a-f]{32}$/);
    expect(await traceIdsOf('TracedCharge')).toEqual([chargeTraceId]);
  });
});
