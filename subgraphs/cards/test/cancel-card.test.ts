import { cards } from '@ghostpay/db';
import { whileAnotherTransactionHolds } from '@ghostpay/test-support';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CardsHarness, startCardsHarness } from './cards-harness.ts';

type Actor = Awaited<ReturnType<CardsHarness['actor']>>;
let h: CardsHarness;
let merchant: Actor;
let holder: Actor;

const cancelMutation = `mutation Cancel($id: ID!) { cancelCard(id: $id) { id status canceledAt } }`;

beforeAll(async () => {
  h = await startCardsHarness({ CARDS_HOUSEKEEPING_ENABLED: 'false' });
  [merchant, holder] = await Promise.all([h.actor('merchant'), h.actor('user')]);
});
afterAll(async () => {
  await h?.close();
});

/**
 * Runs `lockStatement` on the card in a transaction of its own, starts a cancel of the card
 * (which then waits for that transaction), keeps the lock `holdMs`, and commits. Returns the
 * cancel's answer and the database's clock just before the commit.
 */
async function cancelWhileAnotherWriterHolds(cardId: string, lockStatement: string, holdMs: number) {
  const pool = h.database.pool;
  if (!pool) throw new Error('needs PostgreSQL');
  return whileAnotherTransactionHolds(
    pool,
    [lockStatement],
    [cardId],
    () => h.request<{ cancelCard: { id: string; status: string; canceledAt: string } }>(holder.token, cancelMutation, { id: cardId }),
    holdMs,
  );
}

const lockers = [
  ['updates it (a charge, a sweep, a re-encryption)', 'update cards.cards set pan_key_id = pan_key_id where id = $1'],
  ['only locks it', 'select id from cards.cards where id = $1 for no key update'],
] as const;

describe('cancelCard after waiting for another writer of the card', () => {
  it.each(lockers)(
    'answers EXPIRED for a card that expired while the cancel waited for a transaction that %s',
    async (_name, lockStatement) => {
      const expiresAt = new Date(Date.now() + 1_000);
      const card = await h.seed.card({ ownerId: holder.id, issuerId: merchant.id, expiresAt });
      // The cancel starts while the card is still valid, then waits until past its expiry.
      const { result } = await cancelWhileAnotherWriterHolds(card.id, lockStatement, expiresAt.getTime() - Date.now() + 300);
      expect(result.errors?.[0]?.extensions).toMatchObject({ code: 'BAD_USER_INPUT', fields: [{ field: 'id' }] });
      expect(result.errors?.[0]?.extensions?.fields).toEqual([{ field: 'id', message: 'card is EXPIRED and can no longer be canceled' }]);
      const [row] = await h.database.db
        .select({ status: cards.status, canceledAt: cards.canceledAt })
        .from(cards)
        .where(eq(cards.id, card.id));
      expect(row).toEqual({ status: 'ACTIVE', canceledAt: null });
    },
  );

  it.each(lockers)('stamps canceledAt with the time it canceled, after waiting for a transaction that %s', async (_name, lockStatement) => {
    const card = await h.seed.card({ ownerId: holder.id, issuerId: merchant.id });
    const { result, releasedAt } = await cancelWhileAnotherWriterHolds(card.id, lockStatement, 300);
    expect(result.errors).toBeUndefined();
    expect(result.data?.cancelCard.status).toBe('CANCELED');
    const [row] = await h.database.db
      .select({ status: cards.status, canceledAt: cards.canceledAt })
      .from(cards)
      .where(eq(cards.id, card.id));
    expect(row?.status).toBe('CANCELED');
    // Not the transaction's start (before the wait): no earlier than the other writer let go.
    expect(row!.canceledAt!.getTime()).toBeGreaterThanOrEqual(releasedAt.getTime());
    expect(result.data?.cancelCard.canceledAt).toBe(row!.canceledAt!.toISOString());
  });
});
