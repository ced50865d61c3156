import { describe, expect, it } from 'vitest';
import { callerSafeTraceId } from '../src/request-events.ts';

// Its digits hold a Luhn-valid 15-digit run (926055547748569), so it looks like it holds a PAN.
const panLike = '33c23a3968570d926055547748569a80';
const plain = '4bf92f3577b34da6a3ce929d0e0e4736';
const traceparentOf = (traceId: string) => `00-${traceId}-00f067aa0ba902b7-01`;

describe('the trace id a request event carries', () => {
  it('keeps an id the router’s tracer made up, whatever digits it holds', () => {
    expect(callerSafeTraceId(panLike, undefined)).toBe(panLike);
    // The caller sent a different (or malformed) traceparent that the tracer did not continue.
    expect(callerSafeTraceId(panLike, traceparentOf(plain))).toBe(panLike);
    expect(callerSafeTraceId(panLike, 'garbage')).toBe(panLike);
  });

  it('drops an id the caller chose when it looks like it holds a PAN, and keeps other caller ids', () => {
    expect(callerSafeTraceId(panLike, traceparentOf(panLike))).toBeUndefined();
    expect(callerSafeTraceId(plain, traceparentOf(plain))).toBe(plain);
    expect(callerSafeTraceId(undefined, undefined)).toBeUndefined();
  });
});
