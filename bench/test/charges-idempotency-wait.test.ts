import { chargesConfigSchema, DEFAULT_IDEMPOTENCY_WAIT_MS } from '@ghostpay/charges';
import { parseConfig } from '@ghostpay/platform';
import { describe, expect, it } from 'vitest';
import { chargesIdempotencyWaitMs } from '../src/charges/charges-idempotency-wait.ts';

/** The charges service's IDEMPOTENCY_WAIT_MS from a whole environment, as it loads its config. */
function serviceWaitMs(env: Record<string, string | undefined>): number {
  const result = parseConfig(chargesConfigSchema, env);
  if (!result.ok) throw new Error(result.problems.join('; '));
  return result.config.IDEMPOTENCY_WAIT_MS;
}

describe('the DB-limit process’s idempotency wait', () => {
  it('is the charges service’s default when IDEMPOTENCY_WAIT_MS is unset', () => {
    expect(chargesIdempotencyWaitMs({})).toBe(serviceWaitMs({}));
    expect(chargesIdempotencyWaitMs({})).toBe(DEFAULT_IDEMPOTENCY_WAIT_MS);
  });

  it('follows IDEMPOTENCY_WAIT_MS as the service does, and refuses what the service refuses', () => {
    expect(chargesIdempotencyWaitMs({ IDEMPOTENCY_WAIT_MS: '1500' })).toBe(1500);
    expect(serviceWaitMs({ IDEMPOTENCY_WAIT_MS: '1500' })).toBe(1500);
    expect(() => chargesIdempotencyWaitMs({ IDEMPOTENCY_WAIT_MS: '0' })).toThrow();
    expect(() => serviceWaitMs({ IDEMPOTENCY_WAIT_MS: '0' })).toThrow();
  });
});
