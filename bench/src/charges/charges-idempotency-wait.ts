import { chargesConfigSchema } from '@ghostpay/charges';

/**
 * `IDEMPOTENCY_WAIT_MS` as the charges service reads it from `env`, through the charges config
 * schema's own field: its default (`DEFAULT_IDEMPOTENCY_WAIT_MS`) when unset, the variable,
 * validated as the service validates it, otherwise. The DB-limit process passes it to
 * `authorizeCharge`, so its transaction waits as the stack's charges subgraph (started from the
 * same environment) does.
 */
export function chargesIdempotencyWaitMs(env: Record<string, string | undefined> = process.env): number {
  return chargesConfigSchema.shape.IDEMPOTENCY_WAIT_MS.parse(env.IDEMPOTENCY_WAIT_MS);
}
