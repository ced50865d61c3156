import { connect } from 'node:net';
import { createLogger, startTelemetry, type Telemetry, type TelemetryOptions } from '@ghostpay/platform';
import { type LoopbackServer, startLoopbackServer } from '@ghostpay/test-support';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

type SpanProcessor = NonNullable<TelemetryOptions['spanProcessors']>[number];

/**
 * Tracing on, as `main.ts` starts it: the OpenTelemetry HTTP instrumentation continues the
 * client's trace and the undici instrumentation injects the bridge's span into its router call.
 * Its own file: the SDK is process-wide, and the other bridge tests run with tracing off.
 */
describe('the bridge with tracing on', () => {
  const spanIds = new Set<string>();
  const recorder: SpanProcessor = {
    onStart() {},
    onEnd(span) {
      spanIds.add(span.spanContext().spanId);
    },
    forceFlush: async () => {},
    shutdown: async () => {},
  };
  let telemetry: Telemetry;
  let fakeRouter: LoopbackServer;
  let bridge: { start(port: number): Promise<string>; close(): Promise<void> };
  let bridgeUrl = '';
  const seen: { traceparents: string[]; tracestates: string[] }[] = [];

  beforeAll(async () => {
    telemetry = startTelemetry({ serviceName: 'openapi-bridge', env: {}, spanProcessors: [recorder] });
    // Loaded after the SDK started, as main.ts does.
    const { bridgeConfigSchema, createBridge } = await import('../src/index.ts');
    fakeRouter = await startLoopbackServer((req, res) => {
      const valuesOf = (name: string) => req.rawHeaders.filter((_, i, all) => i % 2 === 1 && all[i - 1]?.toLowerCase() === name);
      seen.push({ traceparents: valuesOf('traceparent'), tracestates: valuesOf('tracestate') });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ data: { card: null }, errors: [{ message: 'Card not found', extensions: { code: 'NOT_FOUND' } }] }));
    });
    bridge = createBridge({
      config: bridgeConfigSchema.parse({ LOG_LEVEL: 'silent', SHUTDOWN_TIMEOUT_MS: '200', ROUTER_URL: `${fakeRouter.url}/graphql` }),
      logger: createLogger({ service: 'bridge-test', level: 'silent' }),
    });
    bridgeUrl = await bridge.start(0);
  });

  afterAll(async () => {
    await bridge?.close();
    await fakeRouter?.close();
    await telemetry?.shutdown();
  });

  /**
   * GET /cards/card_1 over a raw socket, so the test's own client is not instrumented and adds no
   * traceparent. The socket stays open for writing (a half-close would abort the request).
   */
  const getCard = (traceHeaders: string) =>
    new Promise<string>((resolve, reject) => {
      const socket = connect(Number(new URL(bridgeUrl).port), '127.0.0.1');
      let text = '';
      socket.on('data', (chunk) => {
        text += chunk;
      });
      socket.on('end', () => resolve(text));
      socket.on('error', reject);
      socket.write(`GET /cards/card_1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer a.b.c\r\n${traceHeaders}Connection: close\r\n\r\n`);
    });

  it.each([
    ['sampled', '01'],
    ['not sampled', '00'],
  ])('sends the router one traceparent, the bridge’s span in the client’s trace (%s)', async (_, flags) => {
    expect(telemetry.enabled).toBe(true);
    seen.length = 0;
    const traceId = '0af7651916cd43dd8448eb211c80319c';
    const clientSpanId = 'b7ad6b7169203331';
    const raw = await getCard(`traceparent: 00-${traceId}-${clientSpanId}-${flags}\r\ntracestate: congo=t61rcWkgMzE\r\n`);
    expect(raw).toMatch(/^HTTP\/1\.1 404/);
    expect(seen).toHaveLength(1);
    const [sent] = seen;
    expect(sent?.traceparents).toHaveLength(1);
    const [version, sentTraceId, parentId, sentFlags] = (sent?.traceparents[0] ?? '').split('-');
    expect({ version, sentTraceId, sentFlags }).toEqual({ version: '00', sentTraceId: traceId, sentFlags: flags });
    // The router's parent is a span of the bridge, not the client's span.
    expect(parentId).not.toBe(clientSpanId);
    if (flags === '01') expect(spanIds).toContain(parentId);
    // The tracestate travels once, as the SDK re-encodes it from the trace it continued.
    expect(sent?.tracestates).toEqual(['congo=t61rcWkgMzE']);
  });

  it('never copies an oversized tracestate: the SDK drops what W3C bounds refuse', async () => {
    seen.length = 0;
    await getCard(`traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\ntracestate: a=${'x'.repeat(4096)}\r\n`);
    expect(seen[0]?.traceparents).toHaveLength(1);
    expect(seen[0]?.tracestates.join('').length).toBeLessThanOrEqual(512);
  });
});
