import { parseConfig } from '@ghostpay/platform';
import { describe, expect, it } from 'vitest';
import { authConfigSchema, rotationSpacingSeconds } from '../src/config.ts';

const parse = (env: Record<string, string>) => parseConfig(authConfigSchema, { NODE_ENV: 'test', ...env });

describe('SIGNING_KEY_ROTATION_INTERVAL_SECONDS', () => {
  it('is off (0) by default and accepts an hour or more', () => {
    for (const value of [undefined, '0', '3600', '86400', '7776000']) {
      const result = parse(value === undefined ? {} : { SIGNING_KEY_ROTATION_INTERVAL_SECONDS: value });
      expect(result.ok, value).toBe(true);
    }
  });

  it.each(['1', '30', '95', '600', '3599'])('refuses %s s with a config error naming the minimum', (value) => {
    const result = parse({ SIGNING_KEY_ROTATION_INTERVAL_SECONDS: value });
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.problems).toHaveLength(1);
    expect(result.problems[0]).toMatch(
      /^SIGNING_KEY_ROTATION_INTERVAL_SECONDS: must be 0 \(off\) or at least 3600 \(1 hour\): more frequent rotation only fills the JWKS with retired keys/,
    );
  });

  it('must also leave verifiers the rotation spacing when the JWKS may be cached for up to an hour', () => {
    expect(rotationSpacingSeconds(60)).toBe(95);
    expect(rotationSpacingSeconds(3600)).toBe(3635);
    const tooShort = parse({ JWKS_MAX_AGE_SECONDS: '3600', SIGNING_KEY_ROTATION_INTERVAL_SECONDS: '3600' });
    expect(tooShort.ok).toBe(false);
    if (!tooShort.ok) expect(tooShort.problems[0]).toMatch(/^SIGNING_KEY_ROTATION_INTERVAL_SECONDS: must be 0 \(off\) or at least 3635 /);
    expect(parse({ JWKS_MAX_AGE_SECONDS: '3600', SIGNING_KEY_ROTATION_INTERVAL_SECONDS: '3635' }).ok).toBe(true);
    expect(parse({ JWKS_MAX_AGE_SECONDS: '3600', SIGNING_KEY_ROTATION_INTERVAL_SECONDS: '0' }).ok).toBe(true);
  });

  it('still refuses a negative or fractional value', () => {
    expect(parse({ SIGNING_KEY_ROTATION_INTERVAL_SECONDS: '-1' }).ok).toBe(false);
    expect(parse({ SIGNING_KEY_ROTATION_INTERVAL_SECONDS: '3600.5' }).ok).toBe(false);
  });
});
