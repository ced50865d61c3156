/**
 * The database limit: the charges subgraph's own `authorizeCharge` (idempotency claim, the
 * conditional card update, the charge insert, its event and NOTIFY, in one transaction) called
 * straight through a pg pool of the same size as the stack's, at the same concurrency as the
 * HTTP runs, one fresh card per charge. No HTTP, no GraphQL, no JWT: what the database allows.
 *
 * The process stays up for several windows (the bench alternates them with the charge runs'):
 * `setup` hands it the merchant and its pre-issued cards once, so a measured window does not
 * pay for receiving them; each `window` takes the next fresh cards.
 */
import { randomUUID } from 'node:crypto';
import { authorizeCharge } from '@ghostpay/charges';
import { createDatabase } from '@ghostpay/db';
import { type Principal, scopesByRole } from '@ghostpay/platform';
import { serveChild } from '../child-process.ts';
import { summarize } from '../load.ts';
import { chargesIdempotencyWaitMs } from './charges-idempotency-wait.ts';

export type DbLimitRun =
  | {
      kind: 'setup';
      cardIds: string[];
      merchantId: string;
      apiKeyId: string;
      amount: number;
      currency: string;
      connections: number;
    }
  | { kind: 'window'; durationMs: number };

type Setup = Extract<DbLimitRun, { kind: 'setup' }>;

const database = await createDatabase({ url: process.env.DATABASE_URL, applicationName: 'ghostpay-bench-db-limit' });
/** The charges subgraph's wait (its default unless IDEMPOTENCY_WAIT_MS is set), so the transaction is the same. */
const idempotencyWaitMs = chargesIdempotencyWaitMs();
let setup: (Setup & { principal: Principal }) | undefined;
let next = 0;

const runWindow = async ({ cardIds, principal, amount, currency, connections }: Setup & { principal: Principal }, durationMs: number) => {
  const latencies: number[] = [];
  const errorSamples: string[] = [];
  let ok = 0;
  let errors = 0;
  const started = performance.now();
  const deadline = started + durationMs;
  const worker = async () => {
    while (performance.now() < deadline) {
      const cardId = cardIds[next++];
      if (!cardId) throw new Error('ran out of pre-issued cards: issue more');
      const t0 = performance.now();
      try {
        const { charge } = await authorizeCharge(
          { db: database.db, idempotencyWaitMs },
          principal,
          { cardId, amount, currency },
          randomUUID(),
        );
        if (charge.status === 'AUTHORIZED') {
          ok++;
          latencies.push(performance.now() - t0);
        } else {
          errors++;
          if (errorSamples.length < 3) errorSamples.push(`${charge.status} ${charge.declineCode}`);
        }
      } catch (error) {
        errors++;
        if (errorSamples.length < 3) errorSamples.push((error as Error).message);
      }
    }
  };
  await Promise.all(Array.from({ length: connections }, worker));
  return summarize(latencies, ok, errors, (performance.now() - started) / 1000, errorSamples);
};

const child = serveChild({
  onStop: () => database.close(),
  onRun: async (raw) => {
    const run = raw as DbLimitRun;
    if (run.kind === 'setup') {
      const principal: Principal = {
        userId: run.merchantId,
        role: 'merchant',
        scopes: scopesByRole.merchant,
        apiKeyId: run.apiKeyId,
        tokenId: randomUUID(),
        expiresAt: Math.floor(Date.now() / 1000) + 3600,
      };
      setup = { ...run, principal };
      next = 0;
      return {};
    }
    if (!setup) throw new Error('db-limit: a window before setup');
    return runWindow(setup, run.durationMs);
  },
});
child.ready({});
