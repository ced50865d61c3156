import type { IncomingMessage } from 'node:http';
import { describe, expect, it } from 'vitest';
import { freshRequestId, isAcceptableRequestId, looksSecret, requestIdOf } from '../src/index.ts';

const requestWith = (id?: string | string[]) => ({ headers: id === undefined ? {} : { 'x-request-id': id } }) as IncomingMessage;
const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

describe('the request id', () => {
  it('keeps the caller’s id when it is a sane token', () => {
    for (const id of ['req-42', 'a1b2c3.d4:e5_f6', 'f47ac10b-58cc-4372-a567-0e02b2c3d479', 'order-20260131-1234']) {
      expect(requestIdOf(requestWith(id))).toBe(id);
    }
  });

  it('replaces an id that is no sane token, or is given twice, with a fresh UUID', () => {
    for (const id of ['', 'has space', 'x'.repeat(129), 'quote"', ['a', 'b']]) {
      expect(requestIdOf(requestWith(id))).toMatch(uuid);
    }
    expect(requestIdOf(requestWith())).toMatch(uuid);
  });

  it('replaces an id shaped like a card number or a credential, so it is never logged, echoed or forwarded', () => {
    for (const id of [
      '4111111111111111', // a test PAN
      '4000008225470018', // 16 digits, not Luhn-valid: still a card number's shape
      'req-123456789012', // 12 digits in a row
      '4111-1111-1111-1111', // a PAN with separators (Luhn-valid)
      'pan.4111.1111.1111.1111',
      'gp_abcdefghijkl_0123', // an API key
      'eyJhbGciOiJSUzI1NiJ9.e30', // a JWT's first segments
    ]) {
      const chosen = requestIdOf(requestWith(id));
      expect(chosen, id).not.toBe(id);
      expect(chosen).toMatch(uuid);
    }
  });

  it('makes fresh ids that the next service keeps', () => {
    // About 1% of random UUIDs hold a digit run the check refuses; 2,000 draws would meet ~20.
    for (let i = 0; i < 2_000; i++) {
      const id = freshRequestId();
      expect(isAcceptableRequestId(id)).toBe(true);
      expect(looksSecret(id)).toBe(false);
      expect(requestIdOf(requestWith(id))).toBe(id);
    }
  });
});
