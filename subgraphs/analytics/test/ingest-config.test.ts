import { parseConfig } from '@ghostpay/platform';
import { describe, expect, it } from 'vitest';
import { analyticsConfigSchema } from '../src/index.ts';

describe('ingest and retention settings from env', () => {
  it('reads the log retention (the oldest event ingest accepts) in plain decimal days, a fraction allowed', () => {
    for (const [value, days] of [
      [undefined, 30],
      ['7', 7],
      ['0.5', 0.5],
      ['3650', 3650],
    ] as const) {
      const result = parseConfig(analyticsConfigSchema, { ANALYTICS_LOG_RETENTION_DAYS: value });
      expect(result, String(value)).toMatchObject({ ok: true, config: { ANALYTICS_LOG_RETENTION_DAYS: days } });
    }
  });

  it('refuses a blank retention, and one in exponent or hex notation, naming the variable and the value', () => {
    for (const bad of ['', ' ', '1e1', '0x10', '0', '0.0', '-1', '3651', '.5', 'Infinity']) {
      const result = parseConfig(analyticsConfigSchema, { ANALYTICS_LOG_RETENTION_DAYS: bad });
      expect(result, JSON.stringify(bad)).toEqual({
        ok: false,
        problems: [
          `ANALYTICS_LOG_RETENTION_DAYS: must be a number of days in plain decimal (30, 0.5), more than 0 and at most 3650 (got ${JSON.stringify(bad)})`,
        ],
      });
    }
  });

  it('refuses a blank ingest bound or port instead of reading it as 0', () => {
    for (const name of ['ANALYTICS_INGEST_MAX_EVENTS', 'ANALYTICS_INGEST_MAX_BYTES', 'ANALYTICS_PORT']) {
      const result = parseConfig(analyticsConfigSchema, { [name]: '' });
      expect(result, name).toEqual({
        ok: false,
        problems: [expect.stringMatching(new RegExp(`^${name}: must be a whole number .*\\(got ""\\)$`))],
      });
    }
  });
});
