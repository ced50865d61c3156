import { Kind } from 'graphql';
import { describe, expect, it } from 'vitest';
import { SafeIntScalar } from '../src/safe-int-scalar.ts';

describe('SafeInt scalar', () => {
  it('sends every integer a JSON number holds exactly, beyond 32 bits, as a number', () => {
    for (const value of [
      0,
      1,
      -1,
      2_147_483_647,
      2_147_483_648,
      3_000_000_000,
      2 ** 40,
      Number.MAX_SAFE_INTEGER,
      Number.MIN_SAFE_INTEGER,
    ]) {
      expect(SafeIntScalar.serialize(value)).toBe(value);
      expect(JSON.stringify({ n: SafeIntScalar.serialize(value) })).toBe(`{"n":${value}}`);
    }
  });

  it('refuses to send what it cannot hold exactly instead of rounding it', () => {
    for (const value of [Number.MAX_SAFE_INTEGER + 1, 2 ** 60, 1.5, Number.NaN, Number.POSITIVE_INFINITY, '3', null, 10n]) {
      expect(() => SafeIntScalar.serialize(value), String(value)).toThrow(/SafeInt must be an integer/);
    }
  });

  it('reads integers in range from variables and literals, and nothing else', () => {
    expect(SafeIntScalar.parseValue(3_000_000_000)).toBe(3_000_000_000);
    expect(SafeIntScalar.parseLiteral({ kind: Kind.INT, value: '9007199254740991' })).toBe(Number.MAX_SAFE_INTEGER);
    expect(() => SafeIntScalar.parseLiteral({ kind: Kind.INT, value: '9007199254740992' })).toThrow(/SafeInt/);
    expect(() => SafeIntScalar.parseLiteral({ kind: Kind.FLOAT, value: '1.5' })).toThrow(/SafeInt/);
    expect(() => SafeIntScalar.parseValue('12')).toThrow(/SafeInt/);
  });
});
