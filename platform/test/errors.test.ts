import { describe, expect, it } from 'vitest';
import { formatGraphQLError, httpStatusFor, IdempotencyKeyInUseError, isErrorCode } from '../src/errors.ts';

describe('IdempotencyKeyInUseError', () => {
  it('carries when to retry as extensions.retryAfter, whole seconds and at least 1, and formatGraphQLError keeps it', () => {
    for (const [given, seconds] of [
      [1.5, 2],
      [5, 5],
      [0, 1],
    ] as const) {
      const error = new IdempotencyKeyInUseError(given);
      expect(error.extensions).toEqual({ code: 'IDEMPOTENCY_KEY_IN_USE', retryAfter: seconds });
      expect(error.message).toContain(`${seconds} s`);
      expect(formatGraphQLError(error.toJSON(), error).extensions).toEqual({ code: 'IDEMPOTENCY_KEY_IN_USE', retryAfter: seconds });
    }
  });
});

describe('the closed list of codes', () => {
  it('holds only its own codes, never an Object.prototype member', () => {
    for (const name of ['constructor', 'toString', '__proto__', 'hasOwnProperty', 'valueOf']) {
      expect(isErrorCode(name), name).toBe(false);
      expect(httpStatusFor(name), name).toBe(500);
      // An error with such a code is an unexpected one: its message is not passed through.
      const formatted = formatGraphQLError({ message: 'connect ECONNREFUSED 10.0.0.7:5432', extensions: { code: name } });
      expect(formatted, name).toEqual({ message: 'Internal server error', extensions: { code: 'INTERNAL_SERVER_ERROR' } });
    }
    expect(isErrorCode('NOT_FOUND')).toBe(true);
    expect(httpStatusFor('NOT_FOUND')).toBe(404);
    expect(httpStatusFor(undefined)).toBe(500);
  });
});
