import { checkLedger } from '@ghostpay/charges';
import { cards, charges } from '@ghostpay/db';
import { createSeed, createTestTokenIssuer, freshDatabase, type TestDatabase, type TestTokenIssuer } from '@ghostpay/test-support';
import { eq, inArray } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type GraphQLResponse, post, startRouter } from './router-harness.ts';
import { startRealSubgraphs } from './subscriptions-harness.ts';

/**
 * A card holder cancels a card while its merchant charges it, both through the router as real
 * clients would, over the real cards and charges subgraphs sharing one PostgreSQL database.
 * Whichever commits first must win outright: either the card is CANCELED and the charge
 * DECLINED with CARD_CANCELED, or the charge is AUTHORIZED and the cancel refused because the
 * card is USED. Never both a canceled card and a live charge.
 */
describe('cancelCard racing createCharge on the same card', () => {
  const cardCount = 40;
  let issuer: TestTokenIssuer;
  let database: TestDatabase;
  let real: Awaited<ReturnType<typeof startRealSubgraphs>>;
  let router: Awaited<ReturnType<typeof startRouter>>;

  beforeAll(async () => {
    issuer = await createTestTokenIssuer();
    database = await freshDatabase({ poolSize: 20 });
    real = await startRealSubgraphs(database, issuer);
    router = await startRouter({
      verifier: issuer.verifier,
      // analytics is never queried here; its URL only has to be well formed.
      urls: { ...real.urls, analytics: 'http://127.0.0.1:9/graphql' },
      env: { ROUTER_RATE_LIMIT_PER_MINUTE: '100000', ROUTER_ANONYMOUS_RATE_LIMIT_PER_MINUTE: '100000' },
    });
  });
  afterAll(async () => {
    await router?.close();
    await real?.close();
    await database?.close();
  });

  it(`lets exactly one of cancel and charge win on each of ${cardCount} cards, and the ledger stays sound`, async () => {
    const seed = createSeed(database.db);
    const merchant = await seed.user('merchant');
    const holder = await seed.user('user');
    const merchantBearer = await issuer.bearer({ userId: merchant.id, role: 'merchant' });
    const holderBearer = await issuer.bearer({ userId: holder.id, role: 'user' });
    const seeded = [];
    for (let i = 0; i < cardCount; i++) seeded.push(await seed.card({ ownerId: holder.id, issuerId: merchant.id, amount: 5_000 }));

    const cancel = (cardId: string) =>
      post(
        router.graphqlUrl,
        { query: 'mutation Cancel($id: ID!) { cancelCard(id: $id) { id status } }', variables: { id: cardId } },
        {
          authorization: holderBearer,
        },
      );
    const charge = (cardId: string) =>
      post(
        router.graphqlUrl,
        {
          query:
            'mutation Charge($input: CreateChargeInput!, $key: String!) { createCharge(input: $input, idempotencyKey: $key) { id status declineCode } }',
          variables: { input: { cardId, amount: 1_000, currency: 'USD' }, key: `race-${cardId}` },
        },
        { authorization: merchantBearer },
      );

    // Every pair is in flight at once; which of the two is sent first alternates per card.
    const races = await Promise.all(
      seeded.map(async (card, i) => {
        const [cancelled, charged] =
          i % 2 === 0
            ? await Promise.allSettled([cancel(card.id), charge(card.id)])
            : await Promise.allSettled([charge(card.id), cancel(card.id)]).then(([a, b]) => [b, a] as const);
        return { cardId: card.id, cancelled, charged };
      }),
    );

    const ids = seeded.map((card) => card.id);
    const finalRows = await database.db.select({ id: cards.id, status: cards.status }).from(cards).where(inArray(cards.id, ids));
    const finalCards = new Map(finalRows.map((row) => [row.id, row.status]));
    // The ledger's invariants first: a canceled card with a live charge is `charged_card_is_used`.
    expect(await checkLedger(database)).toEqual([]);
    for (const { cardId, cancelled, charged } of races) {
      // Both requests were answered: neither transport failed.
      expect(cancelled.status, `cancel on ${cardId}`).toBe('fulfilled');
      expect(charged.status, `charge on ${cardId}`).toBe('fulfilled');
      const cancelResponse = (cancelled as PromiseFulfilledResult<GraphQLResponse>).value;
      const chargeResponse = (charged as PromiseFulfilledResult<GraphQLResponse>).value;
      // A decline is data, not an error: the charge always answers with a Charge.
      expect(chargeResponse.body.errors, `charge on ${cardId}`).toBeUndefined();
      const createCharge = chargeResponse.body.data?.createCharge as { status: string; declineCode: string | null };
      const rows = await database.db.select({ status: charges.status }).from(charges).where(eq(charges.cardId, cardId));

      if (createCharge.status === 'AUTHORIZED') {
        expect(createCharge.declineCode).toBeNull();
        expect(cancelResponse.body.data, `cancel on ${cardId} after the charge won`).toBeNull();
        expect(cancelResponse.body.errors?.[0]?.extensions, `cancel on ${cardId} after the charge won`).toMatchObject({
          code: 'BAD_USER_INPUT',
          fields: [{ field: 'id', message: 'card is USED and can no longer be canceled' }],
        });
        expect(finalCards.get(cardId), cardId).toBe('USED');
        expect(rows, cardId).toEqual([{ status: 'AUTHORIZED' }]);
      } else {
        expect(createCharge, `charge on ${cardId} after the cancel won`).toEqual({
          id: expect.stringMatching(/^ch_/),
          status: 'DECLINED',
          declineCode: 'CARD_CANCELED',
        });
        expect(cancelResponse.body.errors, `cancel on ${cardId}`).toBeUndefined();
        expect(cancelResponse.body.data).toEqual({ cancelCard: { id: cardId, status: 'CANCELED' } });
        expect(finalCards.get(cardId), cardId).toBe('CANCELED');
        expect(rows, cardId).toEqual([{ status: 'DECLINED' }]);
      }
    }
  }, 60_000);
});
