import { parseConfig } from '@ghostpay/platform';
import { describe, expect, it } from 'vitest';
import { chargesConfigSchema, DEFAULT_IDEMPOTENCY_WAIT_MS } from '../src/index.ts';

const timerVariables = [
  'SETTLEMENT_INTERVAL_MS',
  'IDEMPOTENCY_PRUNE_INTERVAL_MS',
  'IDEMPOTENCY_WAIT_MS',
  'SUBSCRIPTION_KEEPALIVE_MS',
  'SUBSCRIPTION_INIT_TIMEOUT_MS',
] as const;

describe('charges config', () => {
  it('bounds SETTLEMENT_BATCH_SIZE at 1000 with a start-up problem naming the variable, the bound and the value', () => {
    const parsed = (value: string) => parseConfig(chargesConfigSchema, { SETTLEMENT_BATCH_SIZE: value });
    expect(parsed('1000')).toMatchObject({ ok: true, config: { SETTLEMENT_BATCH_SIZE: 1000 } });
    expect(parseConfig(chargesConfigSchema, {})).toMatchObject({ ok: true, config: { SETTLEMENT_BATCH_SIZE: 100 } });
    // A typo that would lock a million rows in one settlement transaction is refused at start.
    for (const value of ['1001', '1000000']) {
      const result = parsed(value);
      expect(result.ok, value).toBe(false);
      if (result.ok) continue;
      expect(result.problems).toEqual([
        `SETTLEMENT_BATCH_SIZE: must be a whole number from 1 to 1000 (charges locked by one settlement transaction) (got "${value}")`,
      ]);
    }
    for (const value of ['0', '-5', '2.5', '', '1e2']) expect(parsed(value).ok, value).toBe(false);
  });

  it('exports the default of IDEMPOTENCY_WAIT_MS as the constant the schema applies', () => {
    expect(DEFAULT_IDEMPOTENCY_WAIT_MS).toBe(2_000);
    expect(parseConfig(chargesConfigSchema, {})).toMatchObject({ ok: true, config: { IDEMPOTENCY_WAIT_MS: DEFAULT_IDEMPOTENCY_WAIT_MS } });
  });

  it('refuses a millisecond variable past 2^31 - 1, where a Node timer fires at once and lock_timeout is refused', () => {
    for (const name of timerVariables) {
      expect(parseConfig(chargesConfigSchema, { [name]: '2147483647' }), name).toMatchObject({
        ok: true,
        config: { [name]: 2_147_483_647 },
      });
      const result = parseConfig(chargesConfigSchema, { [name]: '2147483648' });
      expect(result.ok, name).toBe(false);
      if (result.ok) continue;
      expect(result.problems).toEqual([`${name}: must be a whole number from 1 to 2147483647, in digits (got "2147483648")`]);
    }
  });
});
