import { randomBytes } from 'node:crypto';
import { cards, revealAudit, revealCounters } from '@ghostpay/db';
import type { Principal } from '@ghostpay/platform';
import { poolStatementsOf, whileAnotherTransactionHolds } from '@ghostpay/test-support';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCardsService, deriveCvc, isLuhnValid } from '../src/index.ts';
import { createPanSecrets } from '../src/pan-crypto.ts';
import { revealCard } from '../src/reveal-card.ts';
import { type CardsHarness, type IssuedCard, issue, luhnValidDigitRuns, startCardsHarness } from './cards-harness.ts';

type Actor = Awaited<ReturnType<CardsHarness['actor']>>;
let h: CardsHarness;
let admin: Actor;
let merchant: Actor;
let owner: Actor;
let stranger: Actor;
let card: IssuedCard;
const revealedPans = new Set<string>();

const revealMutation = `mutation Reveal($id: ID!) { revealCard(id: $id) { pan cvc expMonth expYear } }`;
type RevealResult = { revealCard: { pan: string; cvc: string; expMonth: number; expYear: number } };
const maxReveals = 5; // @rateLimit(max: 5, window: "1h") on Mutation.revealCard

async function reveal(h: CardsHarness, token: string, id: string, url?: string) {
  const result = url
    ? await fetch(`${url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
        body: JSON.stringify({ query: revealMutation, variables: { id } }),
      }).then(async (r) => (await r.json()) as Awaited<ReturnType<typeof h.request<RevealResult>>>)
    : await h.request<RevealResult>(token, revealMutation, { id });
  if (result.data?.revealCard) revealedPans.add(result.data.revealCard.pan);
  return result;
}

beforeAll(async () => {
  h = await startCardsHarness();
  [admin, merchant, owner, stranger] = await Promise.all([h.actor('admin'), h.actor('merchant'), h.actor('user'), h.actor('user')]);
  card = await issue(h, merchant.token, { userId: owner.id, amount: 1234, currency: 'USD' });
});
afterAll(async () => {
  await h?.close();
});

const auditRows = (cardId: string) => h.database.db.select().from(revealAudit).where(eq(revealAudit.cardId, cardId));

describe('revealCard', () => {
  it('gives the owner a Luhn-valid PAN matching the card, its derived CVC and expiry, and audits it', async () => {
    const result = await reveal(h, owner.token, card.id);
    expect(result.errors).toBeUndefined();
    const secret = result.data!.revealCard;
    expect(secret.pan).toMatch(/^\d{16}$/);
    expect(isLuhnValid(secret.pan)).toBe(true);
    expect(secret.pan.startsWith(card.bin)).toBe(true);
    expect(secret.pan.endsWith(card.last4)).toBe(true);
    expect(secret).toMatchObject({ expMonth: card.expMonth, expYear: card.expYear });
    expect(secret.cvc).toMatch(/^\d{3}$/);
    expect(secret.cvc).toBe(deriveCvc(h.secretValues['cvc-key'], secret.pan, card.expMonth, card.expYear));
    const audit = await auditRows(card.id);
    expect(audit).toHaveLength(1);
    expect(audit[0]).toMatchObject({ actorId: owner.id, actorRole: 'user', outcome: 'REVEALED' });
    expect(audit[0]!.requestId).toBeTruthy();
  });

  it('gives the same PAN and CVC to an admin, and audits the admin', async () => {
    const first = (await auditRows(card.id)).length;
    const result = await reveal(h, admin.token, card.id);
    expect(result.data?.revealCard.pan).toBe([...revealedPans][0]);
    const audit = await auditRows(card.id);
    expect(audit).toHaveLength(first + 1);
    expect(audit.some((row) => row.actorId === admin.id && row.actorRole === 'admin' && row.outcome === 'REVEALED')).toBe(true);
  });

  it('refuses the issuing merchant with FORBIDDEN, even with a cards:reveal scope, and audits the refusal on the card', async () => {
    const before = (await auditRows(card.id)).length;
    const plain = await reveal(h, merchant.token, card.id);
    expect(plain.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
    const widened = await h.tokens.mint({ userId: merchant.id, role: 'merchant', scopes: ['cards:read', 'cards:reveal'] });
    const scoped = await reveal(h, widened, card.id);
    expect(scoped.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
    expect(scoped.data).toBeNull();
    // The token without cards:reveal is refused by its scope before any card is read: not audited.
    // The one with it reached the card and was refused there: audited.
    const audit = await auditRows(card.id);
    expect(audit).toHaveLength(before + 1);
    expect(audit.filter((row) => row.outcome === 'FORBIDDEN')).toEqual([
      expect.objectContaining({ actorId: merchant.id, actorRole: 'merchant', requestId: expect.any(String) }),
    ]);
  });

  it('refuses a merchant that issued a card to itself, even with a cards:reveal scope, and audits the refusal', async () => {
    const own = await issue(h, merchant.token, { userId: merchant.id, amount: 10, currency: 'USD' });
    const widened = await h.tokens.mint({ userId: merchant.id, role: 'merchant', scopes: ['cards:read', 'cards:reveal'] });
    const result = await reveal(h, widened, own.id);
    expect(result.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
    expect(result.data).toBeNull();
    expect(await auditRows(own.id)).toEqual([expect.objectContaining({ actorId: merchant.id, outcome: 'FORBIDDEN' })]);
  });

  it('answers NOT_FOUND to another user, without an audit row (a stranger writes nothing)', async () => {
    const before = (await auditRows(card.id)).length;
    const result = await reveal(h, stranger.token, card.id);
    expect(result.errors?.[0]?.extensions?.code).toBe('NOT_FOUND');
    expect(JSON.stringify(result)).not.toMatch(/\d{16}/);
    expect(await auditRows(card.id)).toHaveLength(before);
  });

  it(`limits each caller to ${maxReveals} reveals per window with RATE_LIMITED and a retry hint`, async () => {
    const user = await h.actor('user');
    const own = await issue(h, merchant.token, { userId: user.id, amount: 10, currency: 'USD' });
    const codes: (string | undefined)[] = [];
    for (let i = 0; i < maxReveals + 2; i++) codes.push((await reveal(h, user.token, own.id)).errors?.[0]?.extensions?.code);
    expect(codes).toEqual([...Array(maxReveals).fill(undefined), 'RATE_LIMITED', 'RATE_LIMITED']);
    const limited = await reveal(h, user.token, own.id);
    expect(limited.errors?.[0]?.extensions?.retryAfter).toBeGreaterThan(0);
    expect(limited.errors?.[0]?.extensions?.retryAfter).toBeLessThanOrEqual(3600);
    expect(await auditRows(own.id)).toHaveLength(maxReveals);
    // Another caller has their own budget.
    expect((await reveal(h, admin.token, own.id)).errors).toBeUndefined();
  });

  it(`lets exactly ${maxReveals} of 30 concurrent reveals through`, async () => {
    const user = await h.actor('user');
    const own = await issue(h, merchant.token, { userId: user.id, amount: 10, currency: 'USD' });
    const results = await Promise.all(Array.from({ length: 30 }, () => reveal(h, user.token, own.id)));
    const passed = results.filter((r) => r.data?.revealCard);
    const limited = results.filter((r) => r.errors?.[0]?.extensions?.code === 'RATE_LIMITED');
    expect(passed).toHaveLength(maxReveals);
    expect(limited).toHaveLength(30 - maxReveals);
    expect(await auditRows(own.id)).toHaveLength(maxReveals);
    const [counter] = await h.database.db
      .select()
      .from(revealCounters)
      .where(eq(revealCounters.actorId, `${user.id}|revealCard`));
    expect(counter?.count).toBe(30);
  });

  it(`stays exact across two replicas sharing the database: ${maxReveals} of 40 pass`, async () => {
    const replica = createCardsService({
      database: h.database,
      secrets: h.secrets,
      logger: h.logger,
      config: h.config,
      verifier: h.tokens.verifier,
    });
    const replicaUrl = await replica.start(0, '127.0.0.1');
    try {
      const user = await h.actor('user');
      const own = await issue(h, merchant.token, { userId: user.id, amount: 10, currency: 'USD' });
      const results = await Promise.all(
        Array.from({ length: 40 }, (_, i) => reveal(h, user.token, own.id, i % 2 === 0 ? h.url : replicaUrl)),
      );
      expect(results.filter((r) => r.data?.revealCard)).toHaveLength(maxReveals);
      expect(results.filter((r) => r.errors?.[0]?.extensions?.code === 'RATE_LIMITED')).toHaveLength(40 - maxReveals);
      expect(await auditRows(own.id)).toHaveLength(maxReveals);
    } finally {
      await replica.close();
    }
  });

  it('refuses the owner a card that is no longer ACTIVE, its PAN erased or not, and audits the refusal', async () => {
    const user = await h.actor('user');
    const canceled = await issue(h, merchant.token, { userId: user.id, amount: 10, currency: 'USD' });
    const erased = await issue(h, merchant.token, { userId: user.id, amount: 10, currency: 'USD' });
    for (const id of [canceled.id, erased.id]) {
      await h.database.db.update(cards).set({ status: 'CANCELED', canceledAt: new Date() }).where(eq(cards.id, id));
    }
    // The retention's erasure (CARD_PAN_RETENTION_DAYS after the cancel).
    await h.database.db.update(cards).set({ panCiphertext: null }).where(eq(cards.id, erased.id));
    for (const id of [canceled.id, erased.id]) {
      const result = await reveal(h, user.token, id);
      expect(result.errors?.[0]?.extensions?.fields, id).toEqual([
        { field: 'id', message: 'card is CANCELED; only an ACTIVE card can be revealed' },
      ]);
      expect(await auditRows(id)).toEqual([expect.objectContaining({ actorId: user.id, actorRole: 'user', outcome: 'NOT_ACTIVE' })]);
    }
  });

  it('refuses an anonymous reveal with UNAUTHENTICATED before counting it', async () => {
    const result = await h.request(undefined, revealMutation, { id: card.id });
    expect(result.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
  });

  it('tells every cache between it and the caller to keep nothing: cache-control no-store on reveals, reads and refusals', async () => {
    const user = await h.actor('user');
    const own = await issue(h, merchant.token, { userId: user.id, amount: 10, currency: 'USD' });
    const post = (token: string | undefined, query: string, variables: Record<string, unknown>) =>
      fetch(`${h.url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
        body: JSON.stringify({ query, variables }),
      });
    const answers = {
      revealed: await post(user.token, revealMutation, { id: own.id }),
      read: await post(user.token, 'query($id: ID!) { card(id: $id) { id last4 } }', { id: own.id }),
      notFound: await post(stranger.token, revealMutation, { id: own.id }),
      unauthenticated: await post(undefined, 'query($id: ID!) { card(id: $id) { id } }', { id: own.id }),
    };
    const revealed = (await answers.revealed.json()) as { data?: RevealResult };
    expect(revealed.data?.revealCard.pan).toMatch(/^\d{16}$/);
    revealedPans.add(revealed.data!.revealCard.pan);
    for (const [name, response] of Object.entries(answers)) expect(response.headers.get('cache-control'), name).toBe('no-store');
  });

  it('wrote no PAN to any log line during the suite', async () => {
    expect((await h.panLeaksInLogs()).findings).toEqual([]);
    expect(revealedPans.size).toBeGreaterThan(3);
    expect(h.logLines.length).toBeGreaterThan(10);
    expect(h.logLines.some((line) => line.includes('card revealed'))).toBe(true);
    for (const line of h.logLines) {
      for (const pan of revealedPans) expect(line).not.toContain(pan);
      expect(luhnValidDigitRuns(line, isLuhnValid)).toEqual([]);
    }
  });
});

/**
 * Runs `statements` on the card in a transaction of its own, starts a reveal of the card by
 * `token` (which must then wait for that transaction: `untilBlockedBy` fails the test when no
 * backend does), keeps the transaction open `holdMs`, and commits it. Returns the reveal's answer.
 */
async function revealWhileAnotherTransactionHolds(token: string, cardId: string, statements: string[], holdMs = 0) {
  const pool = h.database.pool;
  if (!pool) throw new Error('needs PostgreSQL');
  return (await whileAnotherTransactionHolds(pool, statements, [cardId], () => reveal(h, token, cardId), holdMs)).result;
}

const cancelStatement = `update cards.cards set status = 'CANCELED', canceled_at = now() where id = $1`;

describe('revealCard decides and audits in one transaction', () => {
  it.each([
    ['locks the card as cancelCard does (for no key update)', 'select id from cards.cards where id = $1 for no key update'],
    ['holds the card for update (as a re-encryption batch does)', 'select id from cards.cards where id = $1 for update'],
  ])(
    'refuses a card canceled by a transaction that %s and committed while the reveal waited, audited as a refusal',
    async (_name, lock) => {
      const user = await h.actor('user');
      const own = await issue(h, merchant.token, { userId: user.id, amount: 10, currency: 'USD' });
      const result = await revealWhileAnotherTransactionHolds(user.token, own.id, [lock, cancelStatement]);
      expect(result.data?.revealCard).toBeUndefined();
      expect(result.errors?.[0]?.extensions?.fields).toEqual([
        { field: 'id', message: 'card is CANCELED; only an ACTIVE card can be revealed' },
      ]);
      expect(JSON.stringify(result)).not.toMatch(/\d{16}/);
      expect(await auditRows(own.id)).toEqual([expect.objectContaining({ actorId: user.id, outcome: 'NOT_ACTIVE' })]);
      const [row] = await h.database.db.select({ status: cards.status }).from(cards).where(eq(cards.id, own.id));
      expect(row?.status).toBe('CANCELED');
    },
  );

  it('judges expiry once the card is its own: a card that expired while the reveal waited is EXPIRED', async () => {
    const user = await h.actor('user');
    const expiresAt = new Date(Date.now() + 1_000);
    const seeded = await h.seed.card({ ownerId: user.id, issuerId: merchant.id, expiresAt });
    // A charge that locked the card and rolled back, or changed nothing the reveal reads: only the wait matters.
    const result = await revealWhileAnotherTransactionHolds(
      user.token,
      seeded.id,
      ['select id from cards.cards where id = $1 for no key update'],
      expiresAt.getTime() - Date.now() + 300,
    );
    expect(result.errors?.[0]?.extensions?.fields).toEqual([
      { field: 'id', message: 'card is EXPIRED; only an ACTIVE card can be revealed' },
    ]);
    expect(await auditRows(seeded.id)).toEqual([expect.objectContaining({ actorId: user.id, outcome: 'NOT_ACTIVE' })]);
  });

  it.each([
    ['its key is missing from the keyring', 'pan-encryption-keys', `k9:${randomBytes(32).toString('base64')}`],
    ['the CVC key is missing', 'cvc-key', ''],
  ] as const)('leaves no audit row (and no card data) when the reveal fails after deciding: %s', async (_name, secret, value) => {
    const user = await h.actor('user');
    const own = await issue(h, merchant.token, { userId: user.id, amount: 10, currency: 'USD' });
    h.setSecret(secret, value);
    let result: Awaited<ReturnType<typeof reveal>>;
    try {
      result = await reveal(h, user.token, own.id);
    } finally {
      h.setSecret(secret, h.secretValues[secret]);
    }
    expect(result.errors?.[0]?.extensions?.code).toBe('INTERNAL_SERVER_ERROR');
    expect(result.data?.revealCard).toBeUndefined();
    expect(JSON.stringify(result)).not.toMatch(/\d{16}/);
    expect(await auditRows(own.id)).toEqual([]);
    // With the secret back, the same card reveals and is audited once.
    expect((await reveal(h, user.token, own.id)).data?.revealCard.pan).toMatch(/^\d{16}$/);
    expect(await auditRows(own.id)).toEqual([expect.objectContaining({ outcome: 'REVEALED' })]);
  });
});

describe('revealCard round trips', () => {
  const principalOf = (actor: Actor): Principal => ({
    userId: actor.id,
    role: actor.role,
    scopes: ['cards:read', 'cards:reveal'],
    apiKeyId: 'key_test',
    tokenId: 'tok_test',
    expiresAt: Math.floor(Date.now() / 1000) + 600,
  });
  const revealDirect = (actor: Actor, cardId: string) =>
    revealCard(h.database.db, createPanSecrets(h.secrets), principalOf(actor), cardId, 'req_round_trips');

  it.each([
    ['revealed', 'REVEALED'],
    ['refused as not active', 'NOT_ACTIVE'],
    ['refused as forbidden', 'FORBIDDEN'],
  ] as const)('locks and reads the card in one statement, one transaction, then the audit row: %s', async (_name, outcome) => {
    const user = await h.actor('user');
    const own = await issue(h, merchant.token, { userId: user.id, amount: 10, currency: 'USD' });
    if (outcome === 'NOT_ACTIVE')
      await h.database.db.update(cards).set({ status: 'CANCELED', canceledAt: new Date() }).where(eq(cards.id, own.id));
    const actor = outcome === 'FORBIDDEN' ? merchant : user;
    const { result, statements, checkouts } = await poolStatementsOf(h.database.pool!, () =>
      revealDirect(actor, own.id).then(
        (secret) => ({ secret }),
        (error: unknown) => ({ error }),
      ),
    );
    const onClients = checkouts.flat();
    if (outcome === 'REVEALED') expect((result as { secret: { pan: string } }).secret.pan).toMatch(/^\d{16}$/);
    else expect((result as { error: Error }).error).toBeInstanceOf(Error);
    // One transaction and nothing outside it.
    expect(statements).toEqual(['connect (transaction or checkout)']);
    expect(onClients).toHaveLength(4);
    expect(onClients[0]).toBe('begin');
    // The one card statement: locks (for share) and reads the ciphertext and key id.
    expect(onClients[1]).toMatch(/^select .*"pan_ciphertext".*"pan_key_id".* for share\) "locked"$/s);
    expect(onClients[2]).toMatch(/^insert into "cards"\."reveal_audit"/);
    expect(onClients[3]).toBe('commit');
    expect(await auditRows(own.id)).toEqual([expect.objectContaining({ actorId: actor.id, outcome })]);
  });

  it('answers NOT_FOUND to a caller who may not see the card with one statement and no audit row', async () => {
    const user = await h.actor('user');
    const own = await issue(h, merchant.token, { userId: user.id, amount: 10, currency: 'USD' });
    const { result, checkouts } = await poolStatementsOf(h.database.pool!, () =>
      revealDirect(stranger, own.id).then(
        () => undefined,
        (error: unknown) => error,
      ),
    );
    const onClients = checkouts.flat();
    expect((result as { extensions?: { code?: string } }).extensions?.code).toBe('NOT_FOUND');
    expect(onClients).toEqual(['begin', expect.stringMatching(/ for share\) "locked"$/), 'rollback']);
    expect(await auditRows(own.id)).toEqual([]);
  });
});
