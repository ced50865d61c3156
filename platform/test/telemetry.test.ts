import type { IncomingHttpHeaders } from 'node:http';
import { connect } from 'node:net';
import { type LoopbackServer, startLoopbackServer } from '@ghostpay/test-support';
import { SpanKind, trace } from '@opentelemetry/api';
import { InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor } from '@opentelemetry/sdk-trace';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import {
  createLogger,
  createMetricsRegistry,
  currentTraceId,
  sendJson,
  startTelemetry,
  type Telemetry,
  traceLogFields,
  tracesExporterFromEnv,
} from '../src/index.ts';

describe('telemetry switched by the standard OTEL_* env', () => {
  it('stays off when no exporter or endpoint is configured', () => {
    expect(tracesExporterFromEnv({})).toBe('none');
    expect(startTelemetry({ serviceName: 'test', env: {} }).enabled).toBe(false);
  });

  it('exports over OTLP when an endpoint or the otlp exporter is named, and honours none and OTEL_SDK_DISABLED', () => {
    expect(tracesExporterFromEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' })).toBe('otlp');
    expect(tracesExporterFromEnv({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://collector:4318/v1/traces' })).toBe('otlp');
    expect(tracesExporterFromEnv({ OTEL_TRACES_EXPORTER: 'otlp' })).toBe('otlp');
    expect(tracesExporterFromEnv({ OTEL_TRACES_EXPORTER: 'console' })).toBe('console');
    expect(tracesExporterFromEnv({ OTEL_TRACES_EXPORTER: 'none', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318' })).toBe('none');
    expect(tracesExporterFromEnv({ OTEL_SDK_DISABLED: 'true', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318' })).toBe('none');
  });
});

/** Sends one raw HTTP/1.1 request over a socket, so the test client itself is not instrumented. */
function rawGet(port: number, path: string, headers: Record<string, string>): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let data = '';
    socket.setTimeout(5_000, () => socket.destroy(new Error('raw request timed out')));
    socket.on('data', (chunk) => {
      data += chunk.toString('utf8');
    });
    socket.on('end', () => resolve(data));
    socket.on('error', reject);
    const lines = [
      `GET ${path} HTTP/1.1`,
      'host: 127.0.0.1',
      'connection: close',
      ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
    ];
    socket.write(`${lines.join('\r\n')}\r\n\r\n`);
  });
}

describe('tracing a request through a platform service', () => {
  const exporter = new InMemorySpanExporter();
  let telemetry: Telemetry;
  let downstream: LoopbackServer | undefined;
  let downstreamUrl = '';
  const received: IncomingHttpHeaders[] = [];
  let service: { listen(port: number): Promise<{ port: number }>; close(): Promise<void> };
  let port = 0;

  beforeAll(async () => {
    telemetry = startTelemetry({ serviceName: 'cards', env: {}, spanProcessors: [new SimpleSpanProcessor({ exporter })] });
    // Loaded after the SDK started, as main.ts does, so the instrumentations see the modules.
    const { createServiceServer } = await import('../src/http-server.ts');
    downstream = await startLoopbackServer((req, res) => {
      received.push(req.headers);
      res.end('ok');
    });
    downstreamUrl = `${downstream.url}/downstream`;
    service = createServiceServer({
      service: 'cards',
      logger: createLogger({ service: 'cards', level: 'silent' }),
      registry: createMetricsRegistry('cards'),
      handler: async (_req, res) => {
        const response = await fetch(downstreamUrl);
        await response.text();
        sendJson(res, 200, { traceId: currentTraceId() ?? null });
      },
    });
    ({ port } = await service.listen(0));
  });

  afterAll(async () => {
    await service?.close();
    await downstream?.close();
    await telemetry?.shutdown();
  });

  it('starts a server span under the caller’s traceparent and propagates the trace to an outgoing fetch', async () => {
    expect(telemetry.enabled).toBe(true);
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const callerSpanId = '00f067aa0ba902b7';
    const raw = await rawGet(port, '/cards/card_1', { traceparent: `00-${traceId}-${callerSpanId}-01` });

    expect(raw).toMatch(/^HTTP\/1\.1 200/);
    expect(JSON.parse(raw.slice(raw.indexOf('\r\n\r\n') + 4))).toEqual({ traceId });

    const spans = exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === traceId);
    const listed = spans.map((s) => `${s.name}/${SpanKind[s.kind]}`).join(', ');
    // The downstream server is instrumented too: one server span each, joined by the client span.
    const servers = spans.filter((s: ReadableSpan) => s.kind === SpanKind.SERVER);
    expect(servers, listed).toHaveLength(2);
    const server = servers.find((s) => s.parentSpanContext?.spanId === callerSpanId);
    expect(server, `a server span whose parent is the caller's span: ${listed}`).toBeDefined();
    expect(server?.resource.attributes['service.name']).toBe('cards');

    const client = spans.find((s) => s.kind === SpanKind.CLIENT);
    expect(client, `the fetch made a client span in the same trace: ${listed}`).toBeDefined();
    expect(client?.parentSpanContext?.spanId).toBe(server?.spanContext().spanId);

    const [headers] = received;
    expect(headers?.traceparent).toBe(`00-${traceId}-${client?.spanContext().spanId}-01`);
    const downstreamServer = servers.find((s) => s !== server);
    expect(downstreamServer?.parentSpanContext?.spanId).toBe(client?.spanContext().spanId);
  });

  it('leaves health probes untraced', async () => {
    exporter.reset();
    const raw = await rawGet(port, '/healthz', {});
    expect(raw).toMatch(/^HTTP\/1\.1 200/);
    expect(exporter.getFinishedSpans().filter((s) => s.kind === SpanKind.SERVER)).toHaveLength(0);
  });

  // pg was imported (as an ES module) before the SDK started, as in a service's main.ts.
  it.skipIf(!inject('postgresAdminUrl'))('records a pg query as a child span of the active span', async () => {
    const client = new pg.Client({ connectionString: inject('postgresAdminUrl') });
    await client.connect();
    try {
      exporter.reset();
      const tracer = trace.getTracer('telemetry-test');
      const parent = await tracer.startActiveSpan('authorize charge', async (span) => {
        await client.query('select 1 as one');
        span.end();
        return span.spanContext();
      });
      const query = exporter.getFinishedSpans().find((s) => s.kind === SpanKind.CLIENT && s.spanContext().traceId === parent.traceId);
      expect(query?.parentSpanContext?.spanId).toBe(parent.spanId);
      expect(query?.attributes['db.system.name'] ?? query?.attributes['db.system']).toBe('postgresql');
    } finally {
      await client.end();
    }
  });

  it('stamps trace and span ids on log lines written inside a span', () => {
    trace.getTracer('telemetry-test').startActiveSpan('log inside', (span) => {
      expect(traceLogFields()).toEqual({ trace_id: span.spanContext().traceId, span_id: span.spanContext().spanId });
      span.end();
    });
  });

  it('has no trace id outside a request', () => {
    expect(traceLogFields()).toEqual({});
    expect(currentTraceId()).toBeUndefined();
  });
});
