import { cards } from '@ghostpay/db';
import { poolStatementsOf } from '@ghostpay/test-support';
import { eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cancelCard } from '../src/cancel-card.ts';
import { expireCards, issueCard } from '../src/index.ts';
import { createPanSecrets } from '../src/pan-crypto.ts';
import { type CardsHarness, cardFields, type IssuedCard, issue, startCardsHarness } from './cards-harness.ts';

type Actor = Awaited<ReturnType<CardsHarness['actor']>>;
let h: CardsHarness;
let admin: Actor;
let merchantA: Actor;
let merchantB: Actor;
let alice: Actor;
let bob: Actor;
let aliceFromA: IssuedCard;
let aliceFromB: IssuedCard;
let bobFromA: IssuedCard;

const cardQuery = `query Card($id: ID!) { card(id: $id) { ${cardFields} } }`;
const cardsQuery = `query Cards($filter: CardFilter, $first: Int, $after: String) {
  cards(filter: $filter, first: $first, after: $after) { edges { cursor node { id status } } pageInfo { hasNextPage endCursor } }
}`;
const entitiesQuery = `query Entities($representations: [_Any!]!) {
  _entities(representations: $representations) { ... on Card { id status last4 } ... on User { id cards(first: 50) { edges { node { id } } } } }
}`;
const cancelMutation = `mutation Cancel($id: ID!) { cancelCard(id: $id) { id status canceledAt } }`;

beforeAll(async () => {
  h = await startCardsHarness();
  [admin, merchantA, merchantB, alice, bob] = await Promise.all([
    h.actor('admin'),
    h.actor('merchant'),
    h.actor('merchant'),
    h.actor('user'),
    h.actor('user'),
  ]);
  aliceFromA = await issue(h, merchantA.token, { userId: alice.id, amount: 1000, currency: 'USD' });
  aliceFromB = await issue(h, merchantB.token, { userId: alice.id, amount: 2000, currency: 'USD' });
  bobFromA = await issue(h, merchantA.token, { userId: bob.id, amount: 3000, currency: 'USD' });
});
afterAll(async () => {
  await h?.close();
});

async function visibleIds(token: string, filter?: Record<string, unknown>) {
  const result = await h.request<{ cards: { edges: { node: { id: string } }[] } }>(token, cardsQuery, { filter, first: 100 });
  expect(result.errors).toBeUndefined();
  return result.data!.cards.edges.map((e) => e.node.id).sort();
}
const sorted = (...cardsToSort: IssuedCard[]) => cardsToSort.map((c) => c.id).sort();

describe('ownership', () => {
  it('lets a user see their own cards and nobody else’s', async () => {
    expect(await visibleIds(alice.token)).toEqual(sorted(aliceFromA, aliceFromB));
    const own = await h.request(alice.token, cardQuery, { id: aliceFromA.id });
    expect(own.data?.card).toMatchObject({ id: aliceFromA.id, owner: { id: alice.id } });
  });

  it('answers NOT_FOUND for another user’s card, exactly as for a card that does not exist', async () => {
    const other = await h.request(alice.token, cardQuery, { id: bobFromA.id });
    const missing = await h.request(alice.token, cardQuery, { id: 'card_NoSuchCardHereAtAll1' });
    expect(other.errors?.[0]?.extensions?.code).toBe('NOT_FOUND');
    expect(missing.errors?.[0]?.extensions?.code).toBe('NOT_FOUND');
    expect(other.errors?.[0]?.message.replace(bobFromA.id, 'X')).toBe(
      missing.errors?.[0]?.message.replace('card_NoSuchCardHereAtAll1', 'X'),
    );
  });

  it('lets a merchant see only the cards it issued', async () => {
    expect(await visibleIds(merchantA.token)).toEqual(sorted(aliceFromA, bobFromA));
    expect(await visibleIds(merchantB.token)).toEqual(sorted(aliceFromB));
    const foreign = await h.request(merchantB.token, cardQuery, { id: aliceFromA.id });
    expect(foreign.errors?.[0]?.extensions?.code).toBe('NOT_FOUND');
  });

  it('narrows a merchant’s userId filter to the cards it issued to that user', async () => {
    expect(await visibleIds(merchantA.token, { userId: alice.id })).toEqual(sorted(aliceFromA));
  });

  it('returns nothing when a user filters on another user', async () => {
    expect(await visibleIds(alice.token, { userId: bob.id })).toEqual([]);
  });

  it('lets an admin see every card', async () => {
    expect(await visibleIds(admin.token)).toEqual(sorted(aliceFromA, aliceFromB, bobFromA));
    const any = await h.request(admin.token, cardQuery, { id: bobFromA.id });
    expect(any.data?.card).toMatchObject({ id: bobFromA.id });
  });

  it('applies the same rules to User.cards contributed to the auth subgraph’s User', async () => {
    const userCards = async (token: string, userId: string) => {
      const result = await h.request<{ _entities: { cards: { edges: { node: { id: string } }[] } }[] }>(token, entitiesQuery, {
        representations: [{ __typename: 'User', id: userId }],
      });
      expect(result.errors).toBeUndefined();
      return result.data!._entities[0]!.cards.edges.map((e) => e.node.id).sort();
    };
    expect(await userCards(alice.token, alice.id)).toEqual(sorted(aliceFromA, aliceFromB));
    expect(await userCards(bob.token, alice.id)).toEqual([]);
    expect(await userCards(merchantB.token, alice.id)).toEqual(sorted(aliceFromB));
    expect(await userCards(admin.token, alice.id)).toEqual(sorted(aliceFromA, aliceFromB));
  });

  it('resolves a Card entity the caller may not see to null', async () => {
    const result = await h.request<{ _entities: ({ id: string } | null)[] }>(bob.token, entitiesQuery, {
      representations: [
        { __typename: 'Card', id: aliceFromA.id },
        { __typename: 'Card', id: bobFromA.id },
      ],
    });
    expect(result.data?._entities).toEqual([null, expect.objectContaining({ id: bobFromA.id })]);
  });
});

describe('pagination', () => {
  it('walks every card of a merchant newest first with opaque cursors', async () => {
    const merchant = await h.actor('merchant');
    const issued: string[] = [];
    for (let i = 0; i < 7; i++) issued.push((await issue(h, merchant.token, { userId: alice.id, amount: 100 + i, currency: 'USD' })).id);
    const seen: string[] = [];
    let after: string | null = null;
    for (let page = 0; page < 10; page++) {
      const result: Awaited<
        ReturnType<
          typeof h.request<{ cards: { edges: { node: { id: string } }[]; pageInfo: { hasNextPage: boolean; endCursor: string | null } } }>
        >
      > = await h.request(merchant.token, cardsQuery, { first: 3, after });
      const connection = result.data!.cards;
      seen.push(...connection.edges.map((e) => e.node.id));
      if (!connection.pageInfo.hasNextPage) break;
      after = connection.pageInfo.endCursor;
    }
    expect(seen).toEqual(issued.reverse());
  });

  it('answers a cursor naming a card the caller may not see exactly as one naming no card', async () => {
    // The other merchant's card is the newest: read without the visibility rule, its cursor
    // would page through the caller's older cards and so reveal that it exists, and when.
    const merchant = await h.actor('merchant');
    const holder = await h.actor('user');
    for (let i = 0; i < 3; i++) await issue(h, merchant.token, { userId: holder.id, amount: 100 + i, currency: 'USD' });
    const foreignCard = await issue(h, merchantB.token, { userId: alice.id, amount: 900, currency: 'USD' });
    const cursorOf = (id: string) => Buffer.from(`card:${id}`, 'utf8').toString('base64url');
    const unknownId = `card_${'A'.repeat(22)}`;
    const page = async (token: string, after: string) => {
      const result = await h.request<{ cards: unknown }>(token, cardsQuery, { first: 10, after });
      expect(result.errors).toBeUndefined();
      return result.data?.cards;
    };
    const unknown = await page(merchant.token, cursorOf(unknownId));
    expect(unknown).toEqual({ edges: [], pageInfo: { hasNextPage: false, endCursor: null } });
    expect(await page(merchant.token, cursorOf(foreignCard.id))).toEqual(unknown);
    // The same for a user, and through User.cards.
    expect(await page(holder.token, cursorOf(unknownId))).toEqual(unknown);
    expect(await page(holder.token, cursorOf(foreignCard.id))).toEqual(unknown);
    const userCards = async (after: string) =>
      (
        await h.request<{ _entities: { cards: unknown }[] }>(
          merchant.token,
          `query($r: [_Any!]!, $after: String) { _entities(representations: $r) { ... on User { cards(first: 10, after: $after) { edges { node { id } } pageInfo { hasNextPage endCursor } } } } }`,
          { r: [{ __typename: 'User', id: holder.id }], after },
        )
      ).data?._entities[0]?.cards;
    expect(await userCards(cursorOf(foreignCard.id))).toEqual(await userCards(cursorOf(unknownId)));
    // A cursor the caller was handed still pages as before.
    const own = (await h.request<{ cards: { edges: { cursor: string }[] } }>(merchant.token, cardsQuery, { first: 1 })).data!.cards;
    expect(((await page(merchant.token, own.edges[0]!.cursor)) as { edges: unknown[] }).edges).toHaveLength(2);
  });

  it('rejects a malformed cursor and an oversized page with the field named', async () => {
    const bad = await h.request(admin.token, cardsQuery, { after: 'not-a-cursor' });
    expect(bad.errors?.[0]?.extensions).toMatchObject({ code: 'BAD_USER_INPUT', fields: [{ field: 'after' }] });
    const big = await h.request(admin.token, cardsQuery, { first: 101 });
    expect(big.errors?.[0]?.extensions).toMatchObject({ code: 'BAD_USER_INPUT', fields: [{ field: 'first' }] });
  });
});

describe('expiry', () => {
  it('reads a card past expiresAt as EXPIRED, and filters it as EXPIRED, not ACTIVE', async () => {
    const card = await issue(h, merchantA.token, { userId: bob.id, amount: 500, currency: 'USD', expiresInSeconds: 60 });
    expect(card.status).toBe('ACTIVE');
    // Move the expiry into the past, as time passing would.
    await h.database.db.update(cards).set({ expiresAt: sql`now() - interval '1 second'` }).where(eq(cards.id, card.id));
    const read = await h.request<{ card: { status: string } }>(bob.token, cardQuery, { id: card.id });
    expect(read.data?.card.status).toBe('EXPIRED');
    expect(await visibleIds(bob.token, { status: 'EXPIRED' })).toContain(card.id);
    expect(await visibleIds(bob.token, { status: 'ACTIVE' })).not.toContain(card.id);
    const [row] = await h.database.db.select({ status: cards.status }).from(cards).where(eq(cards.id, card.id));
    expect(row?.status).toBe('ACTIVE');
  });

  it('refuses to cancel or reveal an expired card', async () => {
    const card = await issue(h, merchantA.token, { userId: bob.id, amount: 500, currency: 'USD', expiresInSeconds: 60 });
    await h.database.db.update(cards).set({ expiresAt: sql`now() - interval '1 second'` }).where(eq(cards.id, card.id));
    const cancel = await h.request(bob.token, cancelMutation, { id: card.id });
    expect(cancel.errors?.[0]?.extensions).toMatchObject({ code: 'BAD_USER_INPUT', fields: [{ field: 'id' }] });
    const reveal = await h.request(bob.token, `mutation($id: ID!) { revealCard(id: $id) { last4: pan } }`, { id: card.id });
    expect(reveal.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
  });
});

describe('expiry sweeper', () => {
  it('rewrites only ACTIVE cards past their expiry to EXPIRED', async () => {
    const past = await issue(h, merchantA.token, { userId: bob.id, amount: 500, currency: 'USD', expiresInSeconds: 60 });
    const live = await issue(h, merchantA.token, { userId: bob.id, amount: 500, currency: 'USD', expiresInSeconds: 60 });
    await h.database.db.update(cards).set({ expiresAt: sql`now() - interval '1 second'` }).where(eq(cards.id, past.id));
    expect(await expireCards(h.database.db)).toBeGreaterThanOrEqual(1);
    const statusOf = async (id: string) => (await h.database.db.select({ s: cards.status }).from(cards).where(eq(cards.id, id)))[0]?.s;
    expect(await statusOf(past.id)).toBe('EXPIRED');
    expect(await statusOf(live.id)).toBe('ACTIVE');
    expect(await expireCards(h.database.db)).toBe(0);
  });
});

describe('cancelCard', () => {
  it('lets the owner, the issuer and an admin cancel, and answers a repeat with the same card', async () => {
    for (const actor of [alice, merchantA, admin]) {
      const card = await issue(h, merchantA.token, { userId: alice.id, amount: 900, currency: 'USD' });
      const result = await h.request<{ cancelCard: { status: string; canceledAt: string } }>(actor.token, cancelMutation, { id: card.id });
      expect(result.data?.cancelCard.status).toBe('CANCELED');
      const again = await h.request<{ cancelCard: { status: string; canceledAt: string } }>(actor.token, cancelMutation, { id: card.id });
      expect(again.data?.cancelCard).toEqual(result.data?.cancelCard);
    }
  });

  it('answers NOT_FOUND to another user and another merchant, leaving the card ACTIVE', async () => {
    const card = await issue(h, merchantA.token, { userId: alice.id, amount: 900, currency: 'USD' });
    for (const actor of [bob, merchantB]) {
      const result = await h.request(actor.token, cancelMutation, { id: card.id });
      expect(result.errors?.[0]?.extensions?.code).toBe('NOT_FOUND');
    }
    const [row] = await h.database.db.select({ status: cards.status }).from(cards).where(eq(cards.id, card.id));
    expect(row?.status).toBe('ACTIVE');
  });

  it('refuses to cancel a USED card', async () => {
    const card = await issue(h, merchantA.token, { userId: alice.id, amount: 900, currency: 'USD' });
    await h.database.db.update(cards).set({ status: 'USED', usedAt: new Date() }).where(eq(cards.id, card.id));
    const result = await h.request(alice.token, cancelMutation, { id: card.id });
    expect(result.errors?.[0]?.extensions).toMatchObject({ code: 'BAD_USER_INPUT', fields: [{ field: 'id' }] });
  });
});

describe('entity resolution', () => {
  const statementsOf = <T>(run: () => Promise<T>) => poolStatementsOf(h.database.pool!, run);
  const resolveCards = (token: string, ids: string[]) =>
    h.request<{ _entities: ({ id: string; status: string } | null)[] }>(token, entitiesQuery, {
      representations: ids.map((id) => ({ __typename: 'Card', id })),
    });

  it('resolves 50 cards for the router with one SQL query, the same statement for every batch size', async () => {
    const merchant = await h.actor('merchant');
    const ids: string[] = [];
    for (let i = 0; i < 50; i++) ids.push((await issue(h, merchant.token, { userId: alice.id, amount: 10 + i, currency: 'USD' })).id);
    const fifty = await statementsOf(() => resolveCards(merchant.token, ids));
    expect(fifty.result.errors).toBeUndefined();
    expect(fifty.result.data?._entities.map((c) => c?.id)).toEqual(ids);
    expect(fifty.statements).toHaveLength(1);
    expect(fifty.statements[0]).toMatch(/from "cards"\."cards" where "cards"\."cards"\."id" = any\(\$1::text\[\]\)$/i);
    // One text whatever the batch size, so one prepared statement per connection (an `in`
    // list had a text per length). An unknown id among known ones resolves to null.
    const three = await statementsOf(() => resolveCards(merchant.token, [ids[7]!, 'card_unknown', ids[3]!]));
    expect(three.result.data?._entities).toEqual([expect.objectContaining({ id: ids[7] }), null, expect.objectContaining({ id: ids[3] })]);
    expect(three.statements).toEqual(fifty.statements);
    // A batch of one, the commonest read, is a plain equality.
    const one = await statementsOf(() => resolveCards(merchant.token, [ids[9]!]));
    expect(one.result.data?._entities).toEqual([expect.objectContaining({ id: ids[9] })]);
    expect(one.statements).toHaveLength(1);
    expect(one.statements[0]).toMatch(/from "cards"\."cards" where "cards"\."cards"\."id" = \$1$/i);
    const unknown = await statementsOf(() => resolveCards(merchant.token, ['card_unknown']));
    expect(unknown.result.data?._entities).toEqual([null]);
    expect(unknown.statements).toEqual(one.statements);
  });
});

describe('ids PostgreSQL cannot store', () => {
  // A NUL fails any statement it is bound into (PostgreSQL refuses U+0000 in text), and a lone
  // surrogate reaches the database as U+FFFD: no card has either, so they are not found.
  const nul = (id: string) => `${id}\u0000`;
  const revealMutation = `mutation Reveal($id: ID!) { revealCard(id: $id) { expMonth } }`;

  it('answers card(id), cancelCard and revealCard with NOT_FOUND, not INTERNAL_SERVER_ERROR, and changes nothing', async () => {
    const card = await issue(h, merchantA.token, { userId: alice.id, amount: 900, currency: 'USD' });
    for (const id of [nul(card.id), `${card.id}\ud800`, '\u009b']) {
      const read = await h.request(alice.token, cardQuery, { id });
      expect(read.errors?.[0]?.extensions?.code, JSON.stringify(id)).toBe('NOT_FOUND');
      const cancel = await h.request(alice.token, cancelMutation, { id });
      expect(cancel.errors?.[0]?.extensions?.code, JSON.stringify(id)).toBe('NOT_FOUND');
    }
    const reveal = await h.request(alice.token, revealMutation, { id: nul(card.id) });
    expect(reveal.errors?.[0]?.extensions?.code).toBe('NOT_FOUND');
    const [row] = await h.database.db.select({ status: cards.status }).from(cards).where(eq(cards.id, card.id));
    expect(row?.status).toBe('ACTIVE');
  });

  it('resolves the rest of an entity batch when one representation has a NUL', async () => {
    const result = await h.request<{ _entities: ({ id: string } | null)[] }>(alice.token, entitiesQuery, {
      representations: [
        { __typename: 'Card', id: aliceFromA.id },
        { __typename: 'Card', id: nul(aliceFromB.id) },
      ],
    });
    expect(result.errors).toBeUndefined();
    expect(result.data?._entities).toEqual([expect.objectContaining({ id: aliceFromA.id }), null]);
  });

  it('answers a userId filter with a NUL with BAD_USER_INPUT naming it, and User.cards with no cards', async () => {
    const filtered = await h.request(admin.token, cardsQuery, { filter: { userId: nul(alice.id) }, first: 10 });
    expect(filtered.errors?.[0]?.extensions).toMatchObject({ code: 'BAD_USER_INPUT', fields: [{ field: 'filter.userId' }] });
    const viaUser = await h.request<{ _entities: { cards: { edges: unknown[] } }[] }>(admin.token, entitiesQuery, {
      representations: [{ __typename: 'User', id: nul(alice.id) }],
    });
    expect(viaUser.errors).toBeUndefined();
    expect(viaUser.data?._entities[0]?.cards.edges).toEqual([]);
  });
});

describe('logs', () => {
  it('wrote no PAN to any log line during the suite', async () => {
    const { lines, pans, findings } = await h.panLeaksInLogs();
    expect(lines).toBeGreaterThan(10);
    expect(pans).toBeGreaterThan(50);
    expect(findings).toEqual([]);
  });
});

describe('card reads without the PAN', () => {
  const statementsOf = <T>(run: () => Promise<T>) => poolStatementsOf(h.database.pool!, run);
  const secretColumns = /pan_ciphertext|pan_key_id|pan_fingerprint/;
  const secretFields = ['panCiphertext', 'panKeyId', 'panFingerprint'];
  /** Every statement read the cards table and none named a PAN column. */
  const expectCardReadsWithoutPan = (statements: string[], expected: number) => {
    const cardReads = statements.filter((text) => text.includes('"cards"."cards"'));
    expect(cardReads).toHaveLength(expected);
    for (const text of statements) expect(text).not.toMatch(secretColumns);
  };

  it('never selects the ciphertext, key id or fingerprint for card(id), the pages, entities or User.cards', async () => {
    const one = await statementsOf(() => h.request(alice.token, cardQuery, { id: aliceFromA.id }));
    expect(one.result.data?.card).toMatchObject({ id: aliceFromA.id, last4: expect.stringMatching(/^\d{4}$/) });
    expectCardReadsWithoutPan(one.statements, 1);

    const page = await statementsOf(() =>
      h.request<{ cards: { pageInfo: { endCursor: string } } }>(merchantA.token, cardsQuery, { first: 1 }),
    );
    expect(page.result.errors).toBeUndefined();
    expectCardReadsWithoutPan(page.statements, 1);
    const after = page.result.data!.cards.pageInfo.endCursor;
    const next = await statementsOf(() => h.request(merchantA.token, cardsQuery, { first: 1, after, filter: { status: 'ACTIVE' } }));
    expect(next.result.errors).toBeUndefined();
    expectCardReadsWithoutPan(next.statements, 1);

    const entities = await statementsOf(() =>
      h.request<{ _entities: unknown[] }>(admin.token, entitiesQuery, {
        representations: [
          { __typename: 'Card', id: aliceFromA.id },
          { __typename: 'Card', id: bobFromA.id },
          { __typename: 'User', id: alice.id },
        ],
      }),
    );
    expect(entities.result.errors).toBeUndefined();
    expect(entities.result.data?._entities).toHaveLength(3);
    // One batch for the two cards, one page for the user's cards.
    expectCardReadsWithoutPan(entities.statements, 2);
  });

  it('never selects them for the card cancelCard and issueCard answer with (a repeat and an idempotent replay too)', async () => {
    const fresh = await issue(h, merchantA.token, { userId: alice.id, amount: 700, currency: 'USD' });
    const cancel = await statementsOf(() => h.request(alice.token, cancelMutation, { id: fresh.id }));
    expect(cancel.result.data?.cancelCard).toMatchObject({ id: fresh.id, status: 'CANCELED' });
    expectCardReadsWithoutPan(cancel.statements, 1);
    // A repeat: the update matches nothing, and the card is read to say why.
    const repeat = await statementsOf(() => h.request(alice.token, cancelMutation, { id: fresh.id }));
    expect(repeat.result.data?.cancelCard).toMatchObject({ id: fresh.id, status: 'CANCELED' });
    expectCardReadsWithoutPan(repeat.statements, 2);

    const key = `reads-without-pan-${Date.now()}`;
    const input = { userId: bob.id, amount: 800, currency: 'EUR' };
    const first = await issue(h, merchantB.token, input, key);
    const replay = await statementsOf(() => issue(h, merchantB.token, input, key));
    expect(replay.result.id).toBe(first.id);
    // The owner check, then the replay's join of the key and its card; no transaction.
    expect(replay.statements).not.toContain('connect (transaction or checkout)');
    for (const text of replay.statements) expect(text).not.toMatch(secretColumns);
    expect(replay.statements.some((text) => text.includes('"cards"."idempotency_keys"') && text.includes('"cards"."cards"'))).toBe(true);

    // The insert names the columns it writes; what it returns (inside the transaction) must not be them.
    const issued = await issueCard(
      { db: h.database.db, panSecrets: createPanSecrets(h.secrets), limits: h.config, logger: h.logger },
      { userId: merchantA.id, role: 'merchant', scopes: [], apiKeyId: 'key_test', tokenId: 't', expiresAt: 0 },
      { userId: alice.id, amount: 900, currency: 'USD' },
    );
    for (const field of secretFields) expect(issued).not.toHaveProperty(field);
    const canceled = await cancelCard(
      h.database.db,
      { userId: admin.id, role: 'admin', scopes: [], apiKeyId: 'key_test', tokenId: 't', expiresAt: 0 },
      issued.id,
    );
    expect(canceled.status).toBe('CANCELED');
    for (const field of secretFields) expect(canceled).not.toHaveProperty(field);
  });
});
