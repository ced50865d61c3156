import { describe, expect, it } from 'vitest';
import { callerSafeId, traceIdOf } from '../src/request-events.ts';

// Its digits hold a Luhn-valid 15-digit run (926055547748569), so it looks like it holds a PAN.
const panLike = '33c23a3968570d926055547748569a80';
const plain = '4bf92f3577b34da6a3ce929d0e0e4736';
const traceparentOf = (traceId: string) => `00-${traceId}-00f067aa0ba902b7-01`;

describe('the ids a request event carries', () => {
  it('takes the caller’s trace id only from a traceparent the router would forward', () => {
    expect(traceIdOf(traceparentOf(plain))).toBe(plain);
    expect(traceIdOf(`01-${plain}-00f067aa0ba902b7-03`)).toBe(plain);
    // W3C invalid: an all-zero trace or parent id, version ff, upper-case hex, two joined headers.
    expect(traceIdOf(traceparentOf('0'.repeat(32)))).toBeUndefined();
    expect(traceIdOf(`00-${plain}-0000000000000000-01`)).toBeUndefined();
    expect(traceIdOf(`ff-${plain}-00f067aa0ba902b7-01`)).toBeUndefined();
    expect(traceIdOf(traceparentOf(plain.toUpperCase()))).toBeUndefined();
    expect(traceIdOf(`${traceparentOf(plain)},${traceparentOf(panLike)}`)).toBeUndefined();
  });

  it('keeps an id the router’s tracer made up, whatever digits it holds', () => {
    expect(callerSafeId(panLike, traceIdOf(undefined))).toBe(panLike);
    // The caller sent a different (or malformed) traceparent that the tracer did not continue.
    expect(callerSafeId(panLike, traceIdOf(traceparentOf(plain)))).toBe(panLike);
    expect(callerSafeId(panLike, traceIdOf('garbage'))).toBe(panLike);
  });

  it('drops an id the caller chose when it looks like it holds a PAN, and keeps other caller ids', () => {
    expect(callerSafeId(panLike, traceIdOf(traceparentOf(panLike)))).toBeUndefined();
    expect(callerSafeId(plain, traceIdOf(traceparentOf(plain)))).toBe(plain);
    expect(callerSafeId(undefined, undefined)).toBeUndefined();
  });

  it('treats a request id the same way: the caller’s x-request-id only when it holds nothing PAN-like', () => {
    // A UUID whose digits (with its dashes) hold a Luhn-valid run, as 0.72% of random ones do.
    const uuidLike = '26c41588-1653-4975-9707-0407035bfa3c';
    expect(callerSafeId(uuidLike, undefined)).toBe(uuidLike);
    expect(callerSafeId(uuidLike, uuidLike)).toBeUndefined();
    expect(callerSafeId('req-events-1', 'req-events-1')).toBe('req-events-1');
  });
});
