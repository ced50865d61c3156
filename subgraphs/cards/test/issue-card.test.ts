import { cardIdempotencyKeys, cards } from '@ghostpay/db';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CardsHarness, issue, issueCardMutation, startCardsHarness } from './cards-harness.ts';

let h: CardsHarness;
let merchant: Awaited<ReturnType<CardsHarness['actor']>>;
let admin: Awaited<ReturnType<CardsHarness['actor']>>;
let owner: Awaited<ReturnType<CardsHarness['actor']>>;

beforeAll(async () => {
  h = await startCardsHarness({
    CARD_MAX_AMOUNT: '5000000',
    CARD_MIN_EXPIRES_IN_SECONDS: '60',
    CARD_MAX_EXPIRES_IN_SECONDS: '86400',
    CARD_DEFAULT_EXPIRES_IN_SECONDS: '7200',
  });
  [merchant, admin, owner] = await Promise.all([h.actor('merchant'), h.actor('admin'), h.actor('user')]);
});
afterAll(async () => {
  await h?.close();
});

describe('issueCard', () => {
  it('issues a card for a merchant, owned by the given user, showing only BIN and last four', async () => {
    const before = Date.now();
    const card = await issue(h, merchant.token, { userId: owner.id, amount: 2500, currency: 'USD', expiresInSeconds: 3600 });
    expect(card).toMatchObject({
      status: 'ACTIVE',
      amount: 2500,
      currency: 'USD',
      currencyExponent: 2,
      bin: '400000',
      brand: 'VISA',
      owner: { id: owner.id },
      issuedBy: { id: merchant.id },
    });
    expect(card.id).toMatch(/^card_[0-9A-Za-z]{22}$/);
    expect(card.last4).toMatch(/^\d{4}$/);
    const expiresAt = new Date(card.expiresAt).getTime();
    expect(expiresAt).toBeGreaterThanOrEqual(before + 3600_000);
    expect(expiresAt).toBeLessThan(Date.now() + 3600_000 + 1000);
    expect(card.expMonth).toBe(new Date(expiresAt).getUTCMonth() + 1);
    expect(card.expYear).toBe(new Date(expiresAt).getUTCFullYear());
    const [row] = await h.database.db.select().from(cards).where(eq(cards.id, card.id));
    expect(row?.panKeyId).toBe('k1');
    expect(row?.panCiphertext).not.toContain(card.last4 + card.bin);
  });

  it('issues a card for an admin, with the default lifetime when none is given', async () => {
    const card = await issue(h, admin.token, { userId: owner.id, amount: 1, currency: 'JPY' });
    expect(card).toMatchObject({ status: 'ACTIVE', currency: 'JPY', currencyExponent: 0, issuedBy: { id: admin.id } });
    const lifetime = new Date(card.expiresAt).getTime() - Date.now();
    expect(lifetime).toBeGreaterThan(h.config.CARD_DEFAULT_EXPIRES_IN_SECONDS * 1000 - 60_000);
  });

  it('refuses a user with FORBIDDEN and writes nothing', async () => {
    const result = await h.request(owner.token, issueCardMutation, { input: { userId: owner.id, amount: 100, currency: 'USD' } });
    expect(result.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
    expect(result.data).toBeNull();
    const rows = await h.database.db.select().from(cards).where(eq(cards.issuerId, owner.id));
    expect(rows).toHaveLength(0);
  });

  it('refuses a user even when its token carries cards:write', async () => {
    const token = await h.tokens.mint({ userId: owner.id, role: 'user', scopes: ['cards:read', 'cards:write'] });
    const result = await h.request(token, issueCardMutation, { input: { userId: owner.id, amount: 100, currency: 'USD' } });
    expect(result.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
  });

  it('refuses a caller without a token with UNAUTHENTICATED', async () => {
    const result = await h.request(undefined, issueCardMutation, { input: { userId: owner.id, amount: 100, currency: 'USD' } });
    expect(result.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
  });
});

describe('issueCard validation', () => {
  async function problems(input: Record<string, unknown>, key?: string) {
    const result = await h.request(merchant.token, issueCardMutation, { input, key });
    expect(result.data).toBeNull();
    expect(result.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    return result.errors?.[0]?.extensions?.fields?.map((f) => f.field);
  }
  const valid = () => ({ userId: owner.id, amount: 100, currency: 'USD' });

  it('rejects a zero amount', async () => {
    expect(await problems({ ...valid(), amount: 0 })).toEqual(['input.amount']);
  });
  it('rejects a negative amount', async () => {
    expect(await problems({ ...valid(), amount: -5 })).toEqual(['input.amount']);
  });
  it('rejects an amount above CARD_MAX_AMOUNT and accepts the maximum itself', async () => {
    expect(await problems({ ...valid(), amount: 5_000_001 })).toEqual(['input.amount']);
    await expect(issue(h, merchant.token, { ...valid(), amount: 5_000_000 })).resolves.toMatchObject({ amount: 5_000_000 });
  });
  it('rejects a fractional amount at the GraphQL Int boundary with BAD_USER_INPUT', async () => {
    const result = await h.request(merchant.token, issueCardMutation, { input: { ...valid(), amount: 10.5 } });
    expect(result.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    expect(result.errors?.[0]?.message).toContain('input.amount');
  });
  it('rejects a currency that is not an ISO 4217 code', async () => {
    expect(await problems({ ...valid(), currency: 'ABC' })).toEqual(['input.currency']);
  });
  it('rejects a withdrawn currency and a metal without minor units', async () => {
    expect(await problems({ ...valid(), currency: 'HRK' })).toEqual(['input.currency']);
    expect(await problems({ ...valid(), currency: 'XAU' })).toEqual(['input.currency']);
  });
  it('rejects a lower-case currency code', async () => {
    expect(await problems({ ...valid(), currency: 'usd' })).toEqual(['input.currency']);
  });
  it('rejects an owner that does not exist', async () => {
    expect(await problems({ ...valid(), userId: 'usr_doesnotexist0000000000' })).toEqual(['input.userId']);
  });
  it('rejects a lifetime below and above the configured bounds', async () => {
    expect(await problems({ ...valid(), expiresInSeconds: 59 })).toEqual(['input.expiresInSeconds']);
    expect(await problems({ ...valid(), expiresInSeconds: 86_401 })).toEqual(['input.expiresInSeconds']);
  });
  it('rejects an over-long idempotency key', async () => {
    expect(await problems(valid(), 'k'.repeat(256))).toEqual(['idempotencyKey']);
  });
  it('rejects an owner id and an idempotency key PostgreSQL cannot store, naming each, and writes no row', async () => {
    const before = await h.database.db.select({ id: cards.id }).from(cards);
    expect(await problems({ ...valid(), userId: `${owner.id}\u0000` })).toEqual(['input.userId']);
    expect(await problems(valid(), 'key-\u0000')).toEqual(['idempotencyKey']);
    expect(await problems(valid(), 'key-\u009b')).toEqual(['idempotencyKey']);
    expect(await problems(valid(), 'key-\ud800')).toEqual(['idempotencyKey']);
    expect(await h.database.db.select({ id: cards.id }).from(cards)).toHaveLength(before.length);
  });
  it('rejects an idempotency key holding a card number (keys are stored in clear), but not one built around a UUID', async () => {
    expect(await problems(valid(), 'order-4111 1111 1111 1111')).toEqual(['idempotencyKey']);
    expect(await problems(valid(), 'order-5555555555554444')).toEqual(['idempotencyKey']);
    // A UUID's digits can pass as a card number across its dashes.
    await expect(issue(h, merchant.token, valid(), 'order-41111111-1111-1111-1111-123456789012')).resolves.toMatchObject({
      status: 'ACTIVE',
    });
  });
  it('never answers one lone-surrogate key with the card of another (both would be stored as U+FFFD)', async () => {
    const input = { ...valid(), amount: 4343 };
    const first = await h.request<{ issueCard: { id: string } }>(merchant.token, issueCardMutation, { input, key: 'lone-\ud800' });
    const second = await h.request<{ issueCard: { id: string } }>(merchant.token, issueCardMutation, { input, key: 'lone-\udbff' });
    expect(first.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    expect(second.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
  });
  it('names every bad field at once and writes no row', async () => {
    const before = await h.database.db.select({ id: cards.id }).from(cards);
    const fields = await problems({ userId: 'usr_nobody', amount: -1, currency: 'EURO', expiresInSeconds: 1 });
    expect(fields?.sort()).toEqual(['input.amount', 'input.currency', 'input.expiresInSeconds', 'input.userId']);
    const after = await h.database.db.select({ id: cards.id }).from(cards);
    expect(after).toHaveLength(before.length);
  });
});

describe('idempotent issuance', () => {
  it('returns the same card for the same key and the same input', async () => {
    const input = { userId: owner.id, amount: 777, currency: 'EUR' };
    const first = await issue(h, merchant.token, input, 'order-1');
    const second = await issue(h, merchant.token, input, 'order-1');
    expect(second.id).toBe(first.id);
    const keys = await h.database.db.select().from(cardIdempotencyKeys).where(eq(cardIdempotencyKeys.key, 'order-1'));
    expect(keys).toHaveLength(1);
  });

  it('fails with IDEMPOTENCY_KEY_REUSED for the same key with a different input', async () => {
    await issue(h, merchant.token, { userId: owner.id, amount: 100, currency: 'EUR' }, 'order-2');
    const result = await h.request(merchant.token, issueCardMutation, {
      input: { userId: owner.id, amount: 101, currency: 'EUR' },
      key: 'order-2',
    });
    expect(result.errors?.[0]?.extensions?.code).toBe('IDEMPOTENCY_KEY_REUSED');
  });

  it('scopes keys to the issuer: another merchant may use the same key', async () => {
    const other = await h.actor('merchant');
    const input = { userId: owner.id, amount: 300, currency: 'GBP' };
    const mine = await issue(h, merchant.token, input, 'shared-key');
    const theirs = await issue(h, other.token, input, 'shared-key');
    expect(theirs.id).not.toBe(mine.id);
    expect(theirs.issuedBy.id).toBe(other.id);
  });

  it('creates exactly one card for 20 concurrent duplicates', async () => {
    const input = { userId: owner.id, amount: 4242, currency: 'CHF' };
    const results = await Promise.all(Array.from({ length: 20 }, () => issue(h, merchant.token, input, 'burst-key')));
    const ids = new Set(results.map((card) => card.id));
    expect(ids.size).toBe(1);
    const rows = await h.database.db.select().from(cards).where(eq(cards.currency, 'CHF'));
    expect(rows.map((row) => row.id)).toEqual([...ids]);
  });
});

describe('logs', () => {
  it('wrote no PAN to any log line during the suite', async () => {
    const { lines, pans, findings } = await h.panLeaksInLogs();
    expect(lines).toBeGreaterThan(10);
    expect(pans).toBeGreaterThan(5);
    expect(findings).toEqual([]);
  });
});
