import fc from 'fast-check';
import { GraphQLError, Kind } from 'graphql';
import { describe, expect, it } from 'vitest';
import { DateTimeScalar } from '../src/index.ts';

const parse = (value: string) => DateTimeScalar.parseValue(value) as Date;
const parseLiteral = (value: string) => DateTimeScalar.parseLiteral({ kind: Kind.STRING, value }) as Date;
const daysInMonth = (year: number, month: number) =>
  [31, year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0) ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1]!;
const pad = (n: number, width = 2) => String(n).padStart(width, '0');

describe('DateTime scalar', () => {
  it('refuses a date that does not exist instead of rolling it over into the next month', () => {
    for (const value of [
      '2026-02-30T00:00:00Z',
      '2026-02-29T00:00:00Z',
      '2100-02-29T00:00:00Z',
      '2026-04-31T00:00:00Z',
      '2026-06-31T12:00:00+02:00',
      '2026-09-31T23:59Z',
      '2026-11-31T00:00:00.500Z',
      '2026-01-01T24:00:00Z',
    ]) {
      expect(() => parse(value), value).toThrow(GraphQLError);
      expect(() => parse(value), value).toThrow(/real calendar date/);
      expect(() => parseLiteral(value), value).toThrow(/real calendar date/);
    }
  });

  it('accepts every day that exists, and refuses every one past the end of its month', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 9999 }),
        fc.integer({ min: 1, max: 12 }),
        fc.integer({ min: 1, max: 31 }),
        (year, month, day) => {
          const value = `${pad(year, 4)}-${pad(month)}-${pad(day)}T00:00:00Z`;
          if (day <= daysInMonth(year, month)) {
            const date = parse(value);
            expect([date.getUTCFullYear(), date.getUTCMonth() + 1, date.getUTCDate()]).toEqual([year, month, day]);
          } else {
            expect(() => parse(value), value).toThrow(/real calendar date/);
          }
        },
      ),
      { numRuns: 2_000 },
    );
  });

  it('parses real dates to the instant they name, offsets and leap days included', () => {
    expect(parse('2024-02-29T00:00:00Z').toISOString()).toBe('2024-02-29T00:00:00.000Z');
    expect(parse('2000-02-29T12:30:00Z').toISOString()).toBe('2000-02-29T12:30:00.000Z');
    // The fields are checked as written, before the offset moves the instant to another day.
    expect(parse('2026-01-31T23:30:00-05:00').toISOString()).toBe('2026-02-01T04:30:00.000Z');
    expect(parse('2026-03-01T00:30:00+01:00').toISOString()).toBe('2026-02-28T23:30:00.000Z');
    expect(parse('2026-12-31T23:59:59.999Z').toISOString()).toBe('2026-12-31T23:59:59.999Z');
    expect(parse('0050-01-01T00:00Z').toISOString()).toBe('0050-01-01T00:00:00.000Z');
    fc.assert(
      fc.property(
        fc.date({ min: new Date('0001-01-01T00:00:00Z'), max: new Date('9999-12-31T23:59:59.999Z'), noInvalidDate: true }),
        (date) => {
          expect(parse(date.toISOString()).getTime()).toBe(date.getTime());
        },
      ),
      { numRuns: 1_000 },
    );
  });

  it('still refuses what is not an ISO-8601 date-time with a zone', () => {
    for (const value of ['2026-01-31', '2026-01-31T12:00:00', '2026-13-01T00:00:00Z', '2026-01-01T25:00:00Z', 'tomorrow']) {
      expect(() => parse(value), value).toThrow(/ISO-8601/);
    }
    expect(() => DateTimeScalar.parseValue(1_700_000_000_000)).toThrow(/ISO-8601/);
  });
});
