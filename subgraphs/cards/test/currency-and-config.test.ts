import { parseConfig } from '@ghostpay/platform';
import { describe, expect, it } from 'vitest';
import { cardsConfigSchema, cardsTypeDefs, currencyExponent, currencyExponents } from '../src/index.ts';
import { revealRateLimit, windowToMs } from '../src/service.ts';

describe('ISO 4217 table', () => {
  it('knows the exponent of common currencies', () => {
    expect([
      currencyExponent('USD'),
      currencyExponent('EUR'),
      currencyExponent('JPY'),
      currencyExponent('KWD'),
      currencyExponent('ISK'),
    ]).toEqual([2, 2, 0, 3, 0]);
    // A metal and a funds code: real ISO 4217 entries, but nothing a card is funded in.
    expect(currencyExponent('XAU')).toBeUndefined();
    expect(currencyExponent('CLF')).toBeUndefined();
    expect(currencyExponent('usd')).toBeUndefined();
  });

  it('lists only codes ICU also knows, apart from ones newer than this Node’s ICU', () => {
    const known = new Set(Intl.supportedValuesOf('currency'));
    // Introduced 2018–2025; an ICU may not list them yet (ICU 78 lacks VED).
    const newerThanIcu = new Set(['XCG', 'ZWG', 'VED', 'SLE']);
    const unknown = [...currencyExponents.keys()].filter((code) => !known.has(code) && !newerThanIcu.has(code));
    expect(unknown).toEqual([]);
    expect(currencyExponents.size).toBeGreaterThan(150);
  });
});

describe('cards config', () => {
  it('defaults to a Visa test BIN and a maximum that fits a GraphQL Int', () => {
    const result = parseConfig(cardsConfigSchema, {});
    expect(result.ok && result.config).toMatchObject({ CARD_BIN: '400000', CARDS_PORT: 4002, CARD_MAX_AMOUNT: 100_000_000 });
  });

  it('reports every bad variable by name', () => {
    const result = parseConfig(cardsConfigSchema, { CARD_MAX_AMOUNT: '3000000000', CARD_BIN: '510000', CARDS_PORT: 'x' });
    expect(result.ok).toBe(false);
    const names = result.ok ? [] : result.problems.map((line) => line.split(':')[0]);
    expect(names.sort()).toEqual(['CARDS_PORT', 'CARD_BIN', 'CARD_MAX_AMOUNT']);
  });

  it('keeps a terminal card’s PAN 30 days unless told, 0 to 3650 whole days', () => {
    const days = (value?: string) => {
      const result = parseConfig(cardsConfigSchema, value === undefined ? {} : { CARD_PAN_RETENTION_DAYS: value });
      return result.ok ? result.config.CARD_PAN_RETENTION_DAYS : result.problems.map((line) => line.split(':')[0]);
    };
    expect([days(), days('0'), days('3650')]).toEqual([30, 0, 3650]);
    for (const bad of ['-1', '1.5', '3651', 'forever']) expect(days(bad), bad).toEqual(['CARD_PAN_RETENTION_DAYS']);
  });

  it('refuses bounds where the default lifetime falls outside min and max', () => {
    const result = parseConfig(cardsConfigSchema, { CARD_MIN_EXPIRES_IN_SECONDS: '600', CARD_DEFAULT_EXPIRES_IN_SECONDS: '60' });
    expect(result.ok).toBe(false);
  });
});

describe('reveal limit', () => {
  it('reads max and window from the @rateLimit directive in the SDL', () => {
    expect(revealRateLimit(cardsTypeDefs)).toEqual({ max: 5, windowMs: 3_600_000 });
    expect(windowToMs('15m')).toBe(900_000);
    expect(() => windowToMs('1 hour')).toThrow(/must look like/);
  });
});
