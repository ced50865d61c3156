import { describe, expect, it } from 'vitest';
import { looksSecret, type RequestEvent, redactRequestEvent } from '../src/index.ts';

const event = (timestamp: unknown): RequestEvent =>
  ({
    timestamp,
    requestId: '0b6f4a2e-6c1d-4d43-9a8e-2f7c9d1e5b3a',
    traceId: null,
    operationName: 'Cards',
    operationType: 'query',
    apiKeyId: 'key_1',
    userId: 'usr_1',
    role: 'merchant',
    httpStatus: 200,
    errorCodes: [],
    latencyMs: 3,
    subgraphTimings: [],
  }) as unknown as RequestEvent;

describe('request event redaction of the timestamp', () => {
  it('keeps the time of a timestamp whose fractional digits read as a PAN, in milliseconds, instead of 1970', () => {
    // 16 fractional digits, Luhn-valid: the PAN check took the whole timestamp for a card number.
    const timestamp = '2026-01-31T12:00:00.4111111111111111Z';
    expect(looksSecret(timestamp)).toBe(true);
    expect(redactRequestEvent(event(timestamp)).timestamp).toBe('2026-01-31T12:00:00.411Z');
  });

  it('gives every ISO timestamp in the router form, milliseconds and UTC', () => {
    expect(redactRequestEvent(event('2026-01-31T12:00:00.000Z')).timestamp).toBe('2026-01-31T12:00:00.000Z');
    expect(redactRequestEvent(event('2026-01-31T14:00:00.123456789+02:00')).timestamp).toBe('2026-01-31T12:00:00.123Z');
    expect(redactRequestEvent(event('2026-01-31T12:00Z')).timestamp).toBe('2026-01-31T12:00:00.000Z');
  });

  it('stands in the redaction time, never 1970, for a timestamp that is not one', () => {
    for (const notATimestamp of [undefined, 42, '', 'yesterday', '4111 1111 1111 1111', '2026-01-31T25:00:00Z']) {
      const before = Date.now();
      const at = Date.parse(redactRequestEvent(event(notATimestamp)).timestamp);
      expect(at, String(notATimestamp)).toBeGreaterThanOrEqual(before);
      expect(at, String(notATimestamp)).toBeLessThanOrEqual(Date.now());
    }
  });
});
