import { describe, expect, it } from 'vitest';
import { formatGraphQLError, IdempotencyKeyInUseError } from '../src/errors.ts';

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
