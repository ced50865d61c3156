import { createRequire, syncBuiltinESMExports } from 'node:module';
import { join } from 'node:path';
import { context, isSpanContextValid, trace } from '@opentelemetry/api';
import { CompositePropagator, W3CBaggagePropagator, W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { HttpInstrumentation } from '@opentelemetry/instrumentation-http';
import { PgInstrumentation } from '@opentelemetry/instrumentation-pg';
import { UndiciInstrumentation } from '@opentelemetry/instrumentation-undici';
import { NodeSDK } from '@opentelemetry/sdk-node';
import { BatchSpanProcessor, ConsoleSpanExporter, type SpanProcessor } from '@opentelemetry/sdk-trace';

export interface TelemetryOptions {
  /** `service.name` on every span (`OTEL_SERVICE_NAME` wins when set, as the spec says). */
  serviceName: string;
  /** Where the standard `OTEL_*` variables are read from. @default process.env */
  env?: Record<string, string | undefined>;
  /**
   * Span processors to use instead of the exporter chosen by env, e.g. a
   * `SimpleSpanProcessor(new InMemorySpanExporter())` in tests. Giving them turns tracing on
   * whatever the env says. @default derived from `OTEL_TRACES_EXPORTER` / `OTEL_EXPORTER_OTLP_*`
   */
  spanProcessors?: SpanProcessor[];
}

export interface Telemetry {
  /** False when tracing is off (no exporter configured): every call is then a no-op. */
  readonly enabled: boolean;
  /** Flushes pending spans and unregisters the SDK. Call from the service's onClose. */
  shutdown(): Promise<void>;
}

const disabled: Telemetry = { enabled: false, shutdown: async () => {} };

/** The one SDK of this process: OpenTelemetry's tracer provider and instrumentations are process-wide. */
let started: Telemetry | undefined;

/**
 * Which exporter the env asks for, following the OTel SDK environment spec:
 * - `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none` → off;
 * - `OTEL_TRACES_EXPORTER=console` → spans printed to stdout (debugging);
 * - `OTEL_TRACES_EXPORTER=otlp`, or an OTLP endpoint set → OTLP over HTTP;
 * - nothing set → off. Unlike the SDK's own default (otlp to localhost:4318) we stay
 *   silent, so a developer machine or a test never retries a collector that is not there.
 */
export function tracesExporterFromEnv(env: Record<string, string | undefined>): 'otlp' | 'console' | 'none' {
  if (env.OTEL_SDK_DISABLED?.trim().toLowerCase() === 'true') return 'none';
  const names = (env.OTEL_TRACES_EXPORTER ?? '')
    .split(',')
    .map((s) => s.trim().toLowerCase())
    .filter(Boolean);
  if (names.includes('none')) return 'none';
  if (names.includes('otlp')) return 'otlp';
  if (names.includes('console')) return 'console';
  if (names.length > 0) return 'none';
  return env.OTEL_EXPORTER_OTLP_ENDPOINT || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ? 'otlp' : 'none';
}

/**
 * Starts OpenTelemetry tracing for this process: a server span per inbound HTTP request,
 * client spans for outgoing `http`, `fetch`/undici and `pg` calls, and W3C `traceparent`
 * (+ `baggage`) extracted from requests and injected into outgoing calls, so one trace
 * spans router → subgraph → database.
 *
 * Call it first in `main.ts`, before the modules it instruments are loaded (pg is patched
 * when it is required). The exporter is configured by the standard env
 * (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`,
 * `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_TRACES_SAMPLER`, `OTEL_RESOURCE_ATTRIBUTES`, …); with
 * none of them set it returns a disabled handle and changes nothing. Metrics stay with
 * prom-client (`/metrics`), so the SDK's metric and log pipelines are off.
 *
 * The SDK is process-wide: in the embedded stack (several services in one process) the
 * first call wins and later calls return the same handle.
 */
export function startTelemetry(options: TelemetryOptions): Telemetry {
  if (started) return started;
  const env = options.env ?? process.env;
  let spanProcessors = options.spanProcessors;
  if (!spanProcessors) {
    const exporter = tracesExporterFromEnv(env);
    if (exporter === 'none') return disabled;
    // The OTLP exporter reads its endpoint, headers, timeout and compression from OTEL_* itself.
    spanProcessors = [new BatchSpanProcessor({ exporter: exporter === 'console' ? new ConsoleSpanExporter() : new OTLPTraceExporter() })];
  }
  const sdk = new NodeSDK({
    serviceName: env.OTEL_SERVICE_NAME || options.serviceName,
    spanProcessors,
    textMapPropagator: new CompositePropagator({ propagators: [new W3CTraceContextPropagator(), new W3CBaggagePropagator()] }),
    // Empty readers/processors: metrics are prom-client's job, logs are pino's.
    metricReaders: [],
    logRecordProcessors: [],
    instrumentations: [
      new HttpInstrumentation({
        // Probes and scrapes every few seconds would drown the real traffic in traces.
        ignoreIncomingRequestHook: (req) => /^\/(healthz|readyz|metrics)(\?|$)/.test(req.url ?? ''),
      }),
      new UndiciInstrumentation(),
      new PgInstrumentation({ requireParentSpan: true }),
    ],
  });
  sdk.start();
  patchLoadedModules();
  const handle: Telemetry = {
    enabled: true,
    async shutdown() {
      if (started !== handle) return;
      started = undefined;
      await sdk.shutdown();
    },
  };
  started = handle;
  return handle;
}

/**
 * The instrumentations patch modules through a `require` hook, but our services are ES
 * modules: `import 'node:http'` and an ESM `import pg from 'pg'` never pass through
 * `require`. Requiring them once here lets the hook patch the shared module objects
 * (http's `Server.prototype.emit`, pg's `Client.prototype.query`, pg-pool's `connect`),
 * which every importer shares, whether they were loaded before or after this call.
 * `syncBuiltinESMExports` then refreshes the named ESM exports of the patched builtins.
 */
function patchLoadedModules() {
  const requireFrom = [createRequire(import.meta.url), createRequire(join(process.cwd(), 'package.json'))];
  for (const name of ['node:http', 'node:https']) requireFrom[0]!.call(undefined, name);
  syncBuiltinESMExports();
  for (const require of requireFrom) {
    try {
      const pgPath = require.resolve('pg');
      require(pgPath);
      createRequire(pgPath)('pg-pool');
      return;
    } catch {
      // pg is not installed for this service (router, bridge): nothing to patch.
    }
  }
}

/**
 * The trace id of the active span (32 hex chars), sampled or not (an unsampled span still
 * carries the trace it continues), or undefined when no span is active (tracing off, or outside
 * a request). The bridge relies on this to tell "tracing on" from "off".
 */
export function currentTraceId(): string | undefined {
  const spanContext = trace.getSpan(context.active())?.spanContext();
  return spanContext && isSpanContextValid(spanContext) ? spanContext.traceId : undefined;
}

/**
 * A pino `mixin` that stamps `trace_id` and `span_id` on every log line written inside a
 * trace: `pino({ mixin: traceLogFields })`.
 */
export function traceLogFields(): { trace_id?: string; span_id?: string } {
  const spanContext = trace.getSpan(context.active())?.spanContext();
  if (!spanContext || !isSpanContextValid(spanContext)) return {};
  return { trace_id: spanContext.traceId, span_id: spanContext.spanId };
}
