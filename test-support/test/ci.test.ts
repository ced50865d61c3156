import { describe, expect, it, vi } from 'vitest';
import { inCi } from '../src/index.ts';

describe('inCi', () => {
  it('is true for CI=true or CI=1 only: CI=false, 0, another word or no CI is a developer machine', () => {
    const judged = Object.fromEntries(
      ['true', '1', 'false', '0', '', 'yes', 'TRUE', undefined].map((value) => [
        String(value),
        inCi(value === undefined ? {} : { CI: value }),
      ]),
    );
    expect(judged).toEqual({ true: true, 1: true, false: false, 0: false, '': false, yes: false, TRUE: false, undefined: false });
  });

  it('reads the process environment by default', () => {
    try {
      vi.stubEnv('CI', 'true');
      expect(inCi()).toBe(true);
      vi.stubEnv('CI', 'false');
      expect(inCi()).toBe(false);
    } finally {
      vi.unstubAllEnvs();
    }
  });
});
