import type { IncomingHttpHeaders } from 'node:http';
import { currentTraceId } from './telemetry.ts';

/** W3C Trace Context bounds for `tracestate` (https://www.w3.org/TR/trace-context/#tracestate-header). */
export const maxTraceStateMembers = 32;
export const maxTraceStateLength = 512;

// version-traceid-parentid-flags, lowercase hex only; version ff is invalid.
const traceparentPattern = /^(?!ff)[0-9a-f]{2}-(?!0{32})([0-9a-f]{32})-(?!0{16})([0-9a-f]{16})-([0-9a-f]{2})$/;
// key = simple-key / tenant-id "@" system-id; value = printable ASCII but ',' and '=', not ending in a space.
const traceStateMember =
  /^(?:[a-z][a-z0-9_\-*/]{0,255}|[a-z0-9][a-z0-9_\-*/]{0,240}@[a-z][a-z0-9_\-*/]{0,13})=[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]$/;
// The trace flags W3C defines: sampled (01) and random (02). The rest must be sent as zero.
const knownTraceFlags = 0x03;

/**
 * A `traceparent` as the bridge may forward it: the W3C form with non-zero ids, rebuilt as
 * version 00 with only the defined flag bits. Undefined for anything else (two headers joined
 * with a comma, upper-case hex, all-zero ids, version ff, extra fields).
 */
export function wellFormedTraceparent(value: string | string[] | undefined): string | undefined {
  if (typeof value !== 'string') return undefined;
  const match = traceparentPattern.exec(value);
  if (!match) return undefined;
  const [, traceId, parentId, flags] = match;
  const known = (Number.parseInt(flags as string, 16) & knownTraceFlags).toString(16).padStart(2, '0');
  return `00-${traceId}-${parentId}-${known}`;
}

/**
 * A `tracestate` as the bridge may forward it: at most 32 well-formed list members with distinct
 * keys, 512 characters in all. Anything else is dropped whole (W3C allows discarding it) rather
 * than trimmed, so the router never receives text the bridge did not check.
 */
export function wellFormedTraceState(value: string | string[] | undefined): string | undefined {
  if (typeof value !== 'string') return undefined;
  const members = value
    .split(',')
    .map((member) => member.replace(/^[ \t]+|[ \t]+$/g, ''))
    .filter(Boolean);
  if (members.length === 0 || members.length > maxTraceStateMembers) return undefined;
  const keys = new Set<string>();
  for (const member of members) {
    if (!traceStateMember.test(member)) return undefined;
    const key = member.slice(0, member.indexOf('='));
    if (keys.has(key)) return undefined;
    keys.add(key);
  }
  const joined = members.join(',');
  return joined.length <= maxTraceStateLength ? joined : undefined;
}

/**
 * The trace-context headers a hop (the bridge towards the router, the router towards the
 * subgraphs) sends on for a client request.
 *
 * With tracing on, the OpenTelemetry HTTP instrumentation has already continued the client's
 * trace (it extracted and checked `traceparent`/`tracestate`) and the undici instrumentation
 * injects the bridge's own span into the router call: copying the client's headers as well
 * would send the router two `traceparent`s joined as "A, B", which it cannot parse, so it
 * would start a new trace. With tracing off the bridge is a plain hop and forwards the client's
 * context, but only a well-formed `traceparent` and, beside it, a bounded, well-formed
 * `tracestate`. The sampled flag is kept: whether a remote parent's decision is honoured is the
 * router's sampler's choice (`OTEL_TRACES_SAMPLER`), as it is for the bridge's own spans.
 * `tracing`: whether a span is active for the request; a caller past an `await` passes what it
 * read synchronously at the start of the request.
 */
export function traceHeadersFor(headers: IncomingHttpHeaders, tracing = currentTraceId() !== undefined): Record<string, string> {
  if (tracing) return {};
  const traceparent = wellFormedTraceparent(headers.traceparent);
  if (!traceparent) return {};
  const tracestate = wellFormedTraceState(headers.tracestate);
  return tracestate ? { traceparent, tracestate } : { traceparent };
}
