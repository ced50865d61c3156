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

  it('reads the aggregate retention in plain decimal days: unset is left to the store (93 days, or a day past the logs)', () => {
    for (const [env, days] of [
      [{}, undefined],
      [{ ANALYTICS_AGGREGATE_RETENTION_DAYS: '400' }, 400],
      [{ ANALYTICS_AGGREGATE_RETENTION_DAYS: '31' }, 31],
      [{ ANALYTICS_LOG_RETENTION_DAYS: '0.5', ANALYTICS_AGGREGATE_RETENTION_DAYS: '1.5' }, 1.5],
      [{ ANALYTICS_LOG_RETENTION_DAYS: '3650' }, undefined],
    ] as const) {
      const result = parseConfig(analyticsConfigSchema, env);
      expect(result, JSON.stringify(env)).toMatchObject({ ok: true });
      expect(result.ok && result.config.ANALYTICS_AGGREGATE_RETENTION_DAYS, JSON.stringify(env)).toBe(result.ok ? days : false);
    }
  });

  it('refuses an aggregate retention not a day longer than the logs, or not in plain decimal days', () => {
    for (const [env, problem] of [
      [{ ANALYTICS_AGGREGATE_RETENTION_DAYS: '30' }, 'must be at least 1 day longer than ANALYTICS_LOG_RETENTION_DAYS (30)'],
      [{ ANALYTICS_LOG_RETENTION_DAYS: '7', ANALYTICS_AGGREGATE_RETENTION_DAYS: '7.5' }, 'must be at least 1 day longer'],
      [{ ANALYTICS_AGGREGATE_RETENTION_DAYS: '' }, 'must be a number of days in plain decimal'],
      [{ ANALYTICS_AGGREGATE_RETENTION_DAYS: '1e3' }, 'must be a number of days in plain decimal'],
      [{ ANALYTICS_AGGREGATE_RETENTION_DAYS: '3651' }, 'must be a number of days in plain decimal (30, 0.5), more than 0 and at most 3650'],
    ] as const) {
      const result = parseConfig(analyticsConfigSchema, env);
      expect(result, JSON.stringify(env)).toEqual({
        ok: false,
        problems: [expect.stringContaining(`ANALYTICS_AGGREGATE_RETENTION_DAYS: ${problem}`)],
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
