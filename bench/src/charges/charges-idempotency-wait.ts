import { chargesConfigSchema } from '@ghostpay/charges';

/**
 * `IDEMPOTENCY_WAIT_MS` as the charges service reads it from `env`, through the charges config
 * schema's own field: its default when unset (2000 since bd89cc6), the variable otherwise. The
 * DB-limit process passes it to `authorizeCharge`, so its transaction waits as the stack's
 * charges subgraph (started from the same environment) does; charges exports no default constant.
 */
export function chargesIdempotencyWaitMs(env: Record<string, string | undefined> = process.env): number {
  return chargesConfigSchema.shape.IDEMPOTENCY_WAIT_MS.parse(env.IDEMPOTENCY_WAIT_MS);
}
