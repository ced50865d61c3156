import { cards, type Database } from '@ghostpay/db';
import { and, eq, lte, sql } from 'drizzle-orm';

/**
 * Optional sweeper: rewrites ACTIVE cards past `expires_at` to EXPIRED, so the stored status
 * matches what readers already see (expiry is computed on read, and the charges subgraph's
 * conditional update checks `expires_at` itself; neither depends on this job). Returns the
 * number of cards swept. Idempotent; safe to run from several replicas.
 */
export async function expireCards(db: Database): Promise<number> {
  const swept = await db
    .update(cards)
    .set({ status: 'EXPIRED' })
    .where(and(eq(cards.status, 'ACTIVE'), lte(cards.expiresAt, sql`now()`)))
    .returning({ id: cards.id });
  return swept.length;
}
