import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { containsCardNumber, keyContainsCardNumber, unstorableReason } from '../src/stored-text.ts';

describe('what a service may store as given', () => {
  it('refuses NUL and other control characters, and lone surrogates; free text may hold tabs and line breaks', () => {
    expect(unstorableReason('ch_123')).toBeUndefined();
    expect(unstorableReason('a\u0000b')).toBe('must not contain control characters');
    expect(unstorableReason('a\u009bb')).toBe('must not contain control characters');
    expect(unstorableReason('k\ud800')).toBe('must be valid Unicode text (no lone surrogates)');
    expect(unstorableReason('line one\nline two\tend')).toBe('must not contain control characters');
    expect(unstorableReason('line one\r\nline two\tend', { allowLineBreaks: true })).toBeUndefined();
    expect(unstorableReason('bell\u0007', { allowLineBreaks: true })).toBe(
      'must not contain control characters other than tab and line breaks',
    );
    expect(unstorableReason('Zoë 名前 🙂')).toBeUndefined();
  });

  it('finds a card number whole, in groups split by spaces or dashes, and inside other text', () => {
    for (const text of [
      '4111111111111111',
      'paid with 4111 1111 1111 1111',
      '5555-5555-5555-4444',
      'order-5555555555554444',
      '4111-1111-1111-1111-2027',
      '378282246310005 amex',
    ]) {
      expect(containsCardNumber(text), text).toBe(true);
    }
  });

  it('leaves digits that are no card number: not Luhn-valid, too short or long, wrong first digit, split otherwise', () => {
    for (const text of [
      '4111111111111112',
      'invoice 123456789012',
      '1111111111111117',
      '4111  1111  1111  1111',
      '4111/1111/1111/1111',
      'amount 5000 on 2026-11-23',
    ]) {
      expect(containsCardNumber(text), text).toBe(false);
    }
  });

  it('skips the UUIDs inside an idempotency key, whose digits can join into a Luhn-valid run', () => {
    // A UUID whose dash-separated digits read as a Luhn-valid 16-digit run starting with 4.
    const uuidLike = '41111111-1111-1111-1111-abcdefabcdef';
    expect(containsCardNumber(uuidLike)).toBe(true);
    expect(keyContainsCardNumber(uuidLike)).toBe(false);
    expect(keyContainsCardNumber(`bridge-${uuidLike}`)).toBe(false);
    expect(keyContainsCardNumber('order-4111111111111111')).toBe(true);
    // The documented price (charges README, openapi.yaml): a date-and-sequence key can have the shape.
    expect(keyContainsCardNumber('2026-11-23-000121')).toBe(true);
    expect(keyContainsCardNumber('2026-11-23-000122')).toBe(false);
    for (let i = 0; i < 2_000; i++) expect(keyContainsCardNumber(`bridge-${randomUUID()}`)).toBe(false);
  });
});
