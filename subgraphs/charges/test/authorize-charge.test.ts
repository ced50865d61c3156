import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { cards, chargeIdempotencyKeys, charges } from '@ghostpay/db';
import type { SeededUser } from '@ghostpay/test-support';
import { testAudience, testIssuer } from '@ghostpay/test-support';
import { count, eq } from 'drizzle-orm';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type ChargeJson, createChargeMutation, type Harness, startHarness } from './charges-harness.ts';

const run = promisify(execFile);
let h: Harness;
let merchant: SeededUser;
let otherMerchant: SeededUser;
let holder: SeededUser;
let merchantBearer: string;

beforeAll(async () => {
  h = await startHarness();
  merchant = await h.seed.user('merchant');
  otherMerchant = await h.seed.user('merchant');
  holder = await h.seed.user('user');
  merchantBearer = await h.tokens.bearer({ userId: merchant.id, role: 'merchant' });
});
afterAll(async () => h?.close());
// Every test leaves a sound ledger behind.
afterEach(async () => h.expectLedgerClean());

const card = (overrides: Parameters<Harness['seed']['card']>[0] extends infer O ? Partial<O> : never = {}) =>
  h.seed.card({ ownerId: holder.id, issuerId: merchant.id, amount: 5_000, currency: 'USD', ...overrides });

async function charge(
  cardId: string,
  key: string,
  input: Partial<{ amount: number; currency: string; description: string }> = {},
  bearer = merchantBearer,
) {
  return h.gql<{ createCharge: ChargeJson }>(
    createChargeMutation,
    { input: { cardId, amount: 1_000, currency: 'USD', ...input }, key },
    bearer,
  );
}

async function chargeRows(cardId: string) {
  return h.database.db.select().from(charges).where(eq(charges.cardId, cardId));
}

describe('createCharge', () => {
  it('authorizes a charge on an active card and marks the card USED in the same transaction', async () => {
    const c = await card();
    const result = await charge(c.id, 'k-auth', { description: 'coffee' });
    expect(result.errors).toBeUndefined();
    const created = result.data?.createCharge;
    expect(created).toMatchObject({
      status: 'AUTHORIZED',
      declineCode: null,
      amount: 1_000,
      currency: 'USD',
      refundedAmount: 0,
      description: 'coffee',
    });
    expect(created?.card.id).toBe(c.id);
    expect(created?.merchant.id).toBe(merchant.id);
    expect(created?.authorizedAt).toBeTruthy();
    const [row] = await h.database.db.select().from(cards).where(eq(cards.id, c.id));
    expect(row?.status).toBe('USED');
    expect(row?.usedAt).toBeInstanceOf(Date);
  });

  it('declines a second charge on a used card', async () => {
    const c = await card();
    await charge(c.id, 'k-used-1');
    const second = await charge(c.id, 'k-used-2');
    expect(second.data?.createCharge).toMatchObject({ status: 'DECLINED', declineCode: 'CARD_ALREADY_USED' });
    expect(await chargeRows(c.id)).toHaveLength(2);
  });

  it.each([
    ['CARD_CANCELED', { status: 'CANCELED' as const }, {}],
    ['CARD_EXPIRED', { status: 'EXPIRED' as const }, {}],
    ['CARD_EXPIRED', { expiresAt: new Date(Date.now() - 1_000) }, {}],
    ['CURRENCY_MISMATCH', {}, { currency: 'EUR' }],
    ['AMOUNT_EXCEEDS_LIMIT', {}, { amount: 5_001 }],
  ])('records a DECLINED charge with %s and leaves the card as it was', async (code, cardOverrides, input) => {
    const c = await card(cardOverrides);
    const result = await charge(c.id, `k-${code}-${randomUUID()}`, input);
    expect(result.errors).toBeUndefined();
    expect(result.data?.createCharge).toMatchObject({ status: 'DECLINED', declineCode: code, authorizedAt: null });
    const [row] = await h.database.db.select().from(cards).where(eq(cards.id, c.id));
    expect(row?.status).toBe(c.status);
  });

  it('answers NOT_FOUND for an unknown card and records nothing', async () => {
    const before = await h.database.db.select({ n: count() }).from(charges);
    const result = await charge('card_doesnotexist', 'k-unknown');
    expect(result.errors?.[0]?.extensions?.code).toBe('NOT_FOUND');
    expect(await h.database.db.select({ n: count() }).from(charges)).toEqual(before);
    const keys = await h.database.db.select().from(chargeIdempotencyKeys).where(eq(chargeIdempotencyKeys.key, 'k-unknown'));
    expect(keys).toEqual([]);
  });

  it("answers NOT_FOUND for another merchant's card and leaves it ACTIVE", async () => {
    const foreign = await h.seed.card({ ownerId: holder.id, issuerId: otherMerchant.id });
    const result = await charge(foreign.id, 'k-foreign');
    expect(result.errors?.[0]?.extensions?.code).toBe('NOT_FOUND');
    expect(await chargeRows(foreign.id)).toEqual([]);
    const [row] = await h.database.db.select().from(cards).where(eq(cards.id, foreign.id));
    expect(row?.status).toBe('ACTIVE');
  });

  it('lets an admin charge any card', async () => {
    const admin = await h.seed.user('admin');
    const c = await card();
    const result = await charge(c.id, 'k-admin', {}, await h.tokens.bearer({ userId: admin.id, role: 'admin' }));
    expect(result.data?.createCharge).toMatchObject({ status: 'AUTHORIZED', merchant: { id: admin.id } });
  });

  it('refuses card holders (no charges:write) with FORBIDDEN and anonymous callers with UNAUTHENTICATED', async () => {
    const c = await card();
    const asHolder = await charge(c.id, 'k-holder', {}, await h.tokens.bearer({ userId: holder.id, role: 'user' }));
    expect(asHolder.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
    const anonymous = await charge(c.id, 'k-anon', {}, '');
    expect(anonymous.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
    expect(await chargeRows(c.id)).toEqual([]);
  });

  it.each([
    ['a zero amount', { amount: 0 }, 'k-v1', 'input.amount'],
    ['a negative amount', { amount: -5 }, 'k-v2', 'input.amount'],
    ['an unknown currency', { currency: 'XYZ' }, 'k-v3', 'input.currency'],
    ['a lowercase currency', { currency: 'usd' }, 'k-v4', 'input.currency'],
    // Withdrawn (2023) and a funds code: Intl knows both, no card can be issued in either.
    ['a withdrawn currency', { currency: 'HRK' }, 'k-v4b', 'input.currency'],
    ['a funds code', { currency: 'CLF' }, 'k-v4c', 'input.currency'],
    ['a description over 500 characters', { description: 'x'.repeat(501) }, 'k-v5', 'input.description'],
    ['a description over 500 characters outside the BMP', { description: '\u{1F600}'.repeat(501) }, 'k-v5b', 'input.description'],
    ['an empty idempotency key', {}, '  ', 'idempotencyKey'],
    ['an idempotency key over 255 characters', {}, 'k'.repeat(256), 'idempotencyKey'],
  ])('rejects %s with BAD_USER_INPUT and writes nothing', async (_name, input, key, field) => {
    const c = await card();
    const result = await charge(c.id, key, input);
    expect(result.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    expect(result.errors?.[0]?.message).toContain(field);
    expect(await chargeRows(c.id)).toEqual([]);
    const [row] = await h.database.db.select().from(cards).where(eq(cards.id, c.id));
    expect(row?.status).toBe('ACTIVE');
  });

  it.each([
    ['a NUL in the card id', (id: string) => ({ cardId: `${id}\u0000` }), 'k-c1', 'input.cardId'],
    ['a NUL in the description', () => ({ description: 'coffee\u0000' }), 'k-c2', 'input.description'],
    ['a NUL in the idempotency key', () => ({}), 'k-c4\u0000', 'idempotencyKey'],
    ['a line feed in the idempotency key', () => ({}), 'k-c5\n', 'idempotencyKey'],
    ['a lone surrogate in the idempotency key', () => ({}), 'k-c6\ud800', 'idempotencyKey'],
    // A card number would be stored in clear in the charge, its events and the key's replay.
    ['a card number in the description', () => ({ description: 'paid with 4111 1111 1111 1111, thanks' }), 'k-c7', 'input.description'],
    [
      'a card number glued to a year in the description',
      () => ({ description: 'card 4111-1111-1111-1111-2027' }),
      'k-c8',
      'input.description',
    ],
    ['a card number in the idempotency key', () => ({}), 'order-5555555555554444', 'idempotencyKey'],
  ])('rejects %s with BAD_USER_INPUT naming the field and writes nothing', async (_name, input, key, field) => {
    const c = await card();
    const keysBefore = await h.database.db.select({ n: count() }).from(chargeIdempotencyKeys);
    const result = await h.gql<{ createCharge: ChargeJson }>(
      createChargeMutation,
      { input: { cardId: c.id, amount: 1_000, currency: 'USD', ...input(c.id) }, key },
      merchantBearer,
    );
    expect(result.errors?.[0]?.extensions).toMatchObject({ code: 'BAD_USER_INPUT', fields: [{ field }] });
    expect(result.errors?.[0]?.message).toContain(field);
    expect(await chargeRows(c.id)).toEqual([]);
    const [row] = await h.database.db.select().from(cards).where(eq(cards.id, c.id));
    expect(row?.status).toBe('ACTIVE');
    expect(await h.database.db.select({ n: count() }).from(chargeIdempotencyKeys)).toEqual(keysBefore);
  });

  it('counts a description in characters (code points), as the REST contract does: 500 emoji are 500, not 1000', async () => {
    const description = '\u{1F600}'.repeat(499) + 'x';
    const c = await card();
    const result = await charge(c.id, 'k-emoji', { description });
    expect(result.errors).toBeUndefined();
    expect(result.data?.createCharge).toMatchObject({ status: 'AUTHORIZED', description });
    const [row] = await chargeRows(c.id);
    expect(row?.description).toBe(description);
  });

  it('refuses other control characters in a description but keeps tabs and line breaks', async () => {
    const c = await card();
    const escaped = await charge(c.id, 'k-escape', { description: 'coffee\u001b[2J' });
    expect(escaped.errors?.[0]?.extensions).toMatchObject({ code: 'BAD_USER_INPUT', fields: [{ field: 'input.description' }] });
    expect(await chargeRows(c.id)).toEqual([]);
    const result = await charge(c.id, 'k-lines', { description: 'table 4\r\n\tcoffee\nsecond line' });
    expect(result.data?.createCharge).toMatchObject({ status: 'AUTHORIZED', description: 'table 4\r\n\tcoffee\nsecond line' });
  });

  it('keeps descriptions and keys whose digits are not a card number, and any UUID key', async () => {
    const texts = ['invoice 4111111111111112 (Luhn fails)', 'ref 1234567890123452 (no card network starts with 1)', 'table 12, 2 coffees'];
    for (const [i, description] of texts.entries()) {
      const result = await charge((await card()).id, `k-digits-${i}`, { description });
      expect(result.data?.createCharge, description).toMatchObject({ status: 'AUTHORIZED', description });
    }
    // 0.0x% of random UUIDs hold digit runs that would pass as a card number across their dashes.
    const uuidKey = '41111111-1111-1111-1111-123456789012';
    expect((await charge((await card()).id, uuidKey)).data?.createCharge.status).toBe('AUTHORIZED');
    expect((await charge((await card()).id, `bridge-${uuidKey}`)).data?.createCharge.status).toBe('AUTHORIZED');
  });

  it('rejects a non-integer amount before the resolver runs', async () => {
    const c = await card();
    const result = await h.gql(
      createChargeMutation,
      { input: { cardId: c.id, amount: 10.5, currency: 'USD' }, key: 'k-float' },
      merchantBearer,
    );
    expect(result.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    expect(await chargeRows(c.id)).toEqual([]);
  });

  it('counts outcomes in charges_total by status and decline code', async () => {
    const metrics = await (await fetch(`${h.url}/metrics`)).text();
    expect(metrics).toMatch(/charges_total\{status="AUTHORIZED",decline_code="",service="charges"\} \d+/);
    expect(metrics).toMatch(/charges_total\{status="DECLINED",decline_code="CARD_ALREADY_USED",service="charges"\} \d+/);
  });
});

describe('idempotency', () => {
  it('replays the original charge for the same key and input, even after the charge moved on', async () => {
    const c = await card();
    const first = await charge(c.id, 'k-replay');
    await h.service.settlement.runOnce(); // not due yet with the default delay: nothing changes
    const again = await charge(c.id, 'k-replay');
    expect(again.data?.createCharge).toEqual(first.data?.createCharge);
    expect(await chargeRows(c.id)).toHaveLength(1);
  });

  it('scopes keys to the caller: another merchant may use the same key', async () => {
    const mine = await card();
    const theirs = await h.seed.card({ ownerId: holder.id, issuerId: otherMerchant.id, currency: 'USD' });
    const a = await charge(mine.id, 'k-shared');
    const b = await charge(theirs.id, 'k-shared', {}, await h.tokens.bearer({ userId: otherMerchant.id, role: 'merchant' }));
    expect(a.data?.createCharge.status).toBe('AUTHORIZED');
    expect(b.data?.createCharge.status).toBe('AUTHORIZED');
    expect(a.data?.createCharge.id).not.toBe(b.data?.createCharge.id);
  });

  it('fails a mismatched replay with IDEMPOTENCY_KEY_REUSED and writes nothing', async () => {
    const first = await card();
    const other = await card();
    await charge(first.id, 'k-mismatch', { amount: 1_000 });
    const snapshot = async () => ({
      charges: await h.database.db.select().from(charges),
      keys: await h.database.db.select().from(chargeIdempotencyKeys),
      cards: await h.database.db.select().from(cards),
    });
    const before = await snapshot();
    for (const input of [{ amount: 1_001 }, { description: 'different' }]) {
      const result = await charge(first.id, 'k-mismatch', input);
      expect(result.errors?.[0]?.extensions?.code).toBe('IDEMPOTENCY_KEY_REUSED');
    }
    const otherCard = await h.gql(
      createChargeMutation,
      { input: { cardId: other.id, amount: 1_000, currency: 'USD' }, key: 'k-mismatch' },
      merchantBearer,
    );
    expect(otherCard.errors?.[0]?.extensions?.code).toBe('IDEMPOTENCY_KEY_REUSED');
    expect(await snapshot()).toEqual(before);
  });

  it('gives 50 concurrent requests with the same key one row and identical replays', async () => {
    const c = await card();
    const results = await Promise.all(Array.from({ length: 50 }, () => charge(c.id, 'k-concurrent')));
    for (const result of results) expect(result.errors).toBeUndefined();
    const bodies = new Set(results.map((result) => JSON.stringify(result.data?.createCharge)));
    expect(bodies.size).toBe(1);
    expect(results[0]?.data?.createCharge.status).toBe('AUTHORIZED');
    expect(await chargeRows(c.id)).toHaveLength(1);
    const keys = await h.database.db.select().from(chargeIdempotencyKeys).where(eq(chargeIdempotencyKeys.key, 'k-concurrent'));
    expect(keys).toHaveLength(1);
    expect(keys[0]?.state).toBe('completed');
  });

  it('lets a key whose first attempt failed (NOT_FOUND) be used again', async () => {
    const missing = await charge('card_missing', 'k-retry');
    expect(missing.errors?.[0]?.extensions?.code).toBe('NOT_FOUND');
    const c = await card();
    const retried = await charge(c.id, 'k-retry');
    expect(retried.data?.createCharge.status).toBe('AUTHORIZED');
  });
});

describe('single use across processes', () => {
  it('gives 200 concurrent charges on one card from two OS processes exactly one success and 199 declines', async () => {
    const c = await card();
    const token = await h.tokens.mint({ userId: merchant.id, role: 'merchant' });
    const script = fileURLToPath(new URL('./fixtures/charge-burst.ts', import.meta.url));
    const burst = (prefix: string) =>
      run(process.execPath, [script], {
        timeout: 60_000,
        env: {
          ...process.env,
          DATABASE_URL: h.database.url,
          JWKS: JSON.stringify(h.tokens.jwks),
          ISSUER: testIssuer,
          AUDIENCE: testAudience,
          TOKEN: token,
          CARD_ID: c.id,
          COUNT: '100',
          KEY_PREFIX: prefix,
        },
      });
    const outputs = await Promise.all([burst('proc-a'), burst('proc-b')]);
    const reports = outputs.map(
      (output) =>
        JSON.parse(output.stdout.trim().split('\n').at(-1) ?? '') as {
          pid: number;
          results: Array<{ data?: { createCharge: ChargeJson }; errors?: unknown[] }>;
        },
    );
    expect(new Set(reports.map((r) => r.pid)).size).toBe(2);
    const results = reports.flatMap((report) => report.results);
    expect(results).toHaveLength(200);
    expect(results.filter((r) => r.errors)).toEqual([]);
    const statuses = results.map((r) => r.data?.createCharge.status);
    expect(statuses.filter((s) => s === 'AUTHORIZED')).toHaveLength(1);
    expect(statuses.filter((s) => s === 'DECLINED')).toHaveLength(199);
    expect(new Set(results.filter((r) => r.data?.createCharge.status === 'DECLINED').map((r) => r.data?.createCharge.declineCode))).toEqual(
      new Set(['CARD_ALREADY_USED']),
    );
    const rows = await chargeRows(c.id);
    expect(rows).toHaveLength(200);
    expect(rows.filter((row) => row.status !== 'DECLINED')).toHaveLength(1);
  }, 90_000);
});
