import { createCipheriv, randomBytes } from 'node:crypto';
import { cards } from '@ghostpay/db';
import { eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  decryptPan,
  encryptPan,
  generatePan,
  isLuhnValid,
  issueCard,
  panCiphertextVersion,
  panFingerprint,
  parsePanKeyring,
  reencryptCards,
} from '../src/index.ts';
import { createPanSecrets } from '../src/pan-crypto.ts';
import { type CardsHarness, issue, luhnValidDigitRuns, startCardsHarness } from './cards-harness.ts';

type Actor = Awaited<ReturnType<CardsHarness['actor']>>;
let h: CardsHarness;
let merchant: Actor;
let owner: Actor;
const knownPans = new Set<string>();

beforeAll(async () => {
  h = await startCardsHarness();
  [merchant, owner] = await Promise.all([h.actor('merchant'), h.actor('user')]);
});
afterAll(async () => {
  await h?.close();
});

/** `db.execute` is typed loosely across drivers; both pg and PGlite answer `{ rows }`. */
async function rowsOf<T>(query: Promise<unknown>): Promise<T[]> {
  return ((await query) as { rows: T[] }).rows;
}

const keyringNow = () => parsePanKeyring(h.secretValues['pan-encryption-keys']);
const newKey = () => randomBytes(32).toString('base64');

describe('PAN generation', () => {
  it('checks Luhn on known numbers', () => {
    expect(isLuhnValid('4111111111111111')).toBe(true);
    expect(isLuhnValid('4000000000000002')).toBe(true);
    expect(isLuhnValid('4111111111111112')).toBe(false);
    expect(isLuhnValid('79927398713')).toBe(true);
    expect(isLuhnValid('4111-1111')).toBe(false);
  });

  it('draws 16-digit Luhn-valid PANs under the BIN', () => {
    for (let i = 0; i < 10_000; i++) {
      const pan = generatePan('400000');
      expect(pan).toMatch(/^400000\d{10}$/);
      if (!isLuhnValid(pan)) throw new Error('generated a PAN failing Luhn');
    }
  });
});

describe('PAN encryption', () => {
  it('encrypts the same PAN to a different ciphertext each time, both decrypting back', () => {
    const keyring = keyringNow();
    const pan = generatePan('400000');
    const a = encryptPan(keyring, 'card_x', pan);
    const b = encryptPan(keyring, 'card_x', pan);
    expect(a.ciphertext).not.toBe(b.ciphertext);
    expect(decryptPan(keyring, 'card_x', a.keyId, a.ciphertext)).toBe(pan);
    expect(decryptPan(keyring, 'card_x', b.keyId, b.ciphertext)).toBe(pan);
  });

  it('refuses a ciphertext moved to another card and one under an unknown key, without echoing card data', () => {
    const keyring = keyringNow();
    const pan = generatePan('400000');
    const { ciphertext, keyId } = encryptPan(keyring, 'card_a', pan);
    expect(() => decryptPan(keyring, 'card_b', keyId, ciphertext)).toThrow(/failed authentication/);
    expect(() => decryptPan(keyring, 'card_a', 'gone', ciphertext)).toThrow(/not in the keyring/);
    try {
      decryptPan(keyring, 'card_b', keyId, ciphertext);
    } catch (error) {
      expect(String(error)).not.toContain(pan);
    }
  });

  it('rejects malformed keyrings with a message naming the secret but not the key', () => {
    const key = newKey();
    expect(() => parsePanKeyring('')).toThrow(/pan-encryption-keys/);
    expect(() => parsePanKeyring(key)).toThrow(/id:base64key/);
    expect(() => parsePanKeyring(`k1:${randomBytes(16).toString('base64')}`)).toThrow(/32 bytes/);
    expect(() => parsePanKeyring(`k1:${key},k1:${newKey()}`)).toThrow(/twice/);
    try {
      parsePanKeyring(`k1:${key},k1:${key}`);
    } catch (error) {
      expect(String(error)).not.toContain(key);
    }
    expect(parsePanKeyring(`new:${newKey()}, old:${key}`).activeKeyId).toBe('new');
  });
});

describe('PAN ciphertext format versions', () => {
  /** A ciphertext as every release before format versions wrote it: base64(iv | ciphertext | tag), the card id as AAD. */
  const legacyCiphertext = (key: Buffer, cardId: string, pan: string) => {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', key, iv, { authTagLength: 16 });
    cipher.setAAD(Buffer.from(cardId, 'utf8'));
    const body = Buffer.concat([cipher.update(pan, 'utf8'), cipher.final()]);
    return Buffer.concat([iv, body, cipher.getAuthTag()]).toString('base64');
  };

  it('reads a stored ciphertext without a prefix as version 1, and still writes version 1', () => {
    const keyring = keyringNow();
    const pan = generatePan('400000');
    const legacy = legacyCiphertext(keyring.keys.get(keyring.activeKeyId)!, 'card_v1', pan);
    expect(panCiphertextVersion(legacy)).toBe(1);
    expect(decryptPan(keyring, 'card_v1', keyring.activeKeyId, legacy)).toBe(pan);
    // Every replica must read version 2 before any writes it (see the README): this release writes 1.
    const written = encryptPan(keyring, 'card_v1', pan);
    expect(panCiphertextVersion(written.ciphertext)).toBe(1);
    expect(written.ciphertext).toMatch(/^[A-Za-z0-9+/]+=*$/);
  });

  it('writes and reads version 2 (a v2: prefix, the version bound into the authenticated data)', () => {
    const keyring = keyringNow();
    const pan = generatePan('400000');
    const { ciphertext, keyId } = encryptPan(keyring, 'card_v2', pan, 2);
    expect(ciphertext).toMatch(/^v2:[A-Za-z0-9+/]+=*$/);
    expect(panCiphertextVersion(ciphertext)).toBe(2);
    expect(decryptPan(keyring, 'card_v2', keyId, ciphertext)).toBe(pan);
  });

  it('refuses a tampered version 2 ciphertext: prefix stripped or changed, a flipped byte, another card, without echoing card data', () => {
    const keyring = keyringNow();
    const pan = generatePan('400000');
    const { ciphertext, keyId } = encryptPan(keyring, 'card_t', pan, 2);
    const body = ciphertext.slice('v2:'.length);
    const raw = Buffer.from(body, 'base64');
    raw[20] = raw[20]! ^ 1;
    const attempts: [string, string, RegExp][] = [
      // Read as version 1, with the card id alone as AAD: the tag fails, no downgrade.
      ['prefix stripped', body, /failed authentication/],
      ['unknown version', `v3:${body}`, /unknown format/],
      ['not a version', `vx:${body}`, /unknown format/],
      ['flipped byte', `v2:${raw.toString('base64')}`, /failed authentication/],
    ];
    for (const [name, tampered, error] of attempts) {
      expect(() => decryptPan(keyring, 'card_t', keyId, tampered), name).toThrow(error);
    }
    expect(() => decryptPan(keyring, 'card_other', keyId, ciphertext)).toThrow(/failed authentication/);
    // A version 1 ciphertext given a v2: prefix does not decrypt either (the AAD differs).
    const legacy = legacyCiphertext(keyring.keys.get(keyring.activeKeyId)!, 'card_t', pan);
    expect(() => decryptPan(keyring, 'card_t', keyId, `v2:${legacy}`)).toThrow(/failed authentication/);
    for (const [, tampered] of attempts) {
      try {
        decryptPan(keyring, 'card_t', keyId, tampered);
      } catch (error) {
        expect(String(error)).not.toContain(pan);
      }
    }
  });
});

describe('2,000 issued cards', () => {
  it('are all Luhn-valid, unique, fingerprinted, and stored without a readable PAN', { timeout: 120_000 }, async () => {
    const total = 2_000;
    let next = 0;
    const worker = async () => {
      while (next < total) {
        next++;
        await issue(h, merchant.token, { userId: owner.id, amount: 100, currency: 'USD' });
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
    const rows = await h.database.db.select().from(cards).where(eq(cards.issuerId, merchant.id));
    expect(rows.length).toBeGreaterThanOrEqual(total);
    const keyring = keyringNow();
    const pans = new Set<string>();
    for (const row of rows) {
      const pan = decryptPan(keyring, row.id, row.panKeyId, row.panCiphertext!);
      knownPans.add(pan);
      pans.add(pan);
      if (!/^\d{16}$/.test(pan) || !isLuhnValid(pan)) throw new Error(`card ${row.id} has an invalid PAN`);
      expect(pan.slice(0, 6)).toBe(row.bin);
      expect(pan.slice(-4)).toBe(row.last4);
      expect(row.panFingerprint).toBe(panFingerprint(h.secretValues['pan-fingerprint-key'], pan));
    }
    expect(pans.size).toBe(rows.length);

    // The stored column: no Luhn-valid 13–19 digit run anywhere, and no row holds its PAN in any column.
    const stored = await rowsOf<{ id: string; ciphertext: string; row: string }>(
      h.database.db.execute(sql`select id, pan_ciphertext as ciphertext, row_to_json(c)::text as row from cards.cards c`),
    );
    for (const { ciphertext } of stored) expect(luhnValidDigitRuns(ciphertext, isLuhnValid)).toEqual([]);
    const byId = new Map(rows.map((row) => [row.id, decryptPan(keyring, row.id, row.panKeyId, row.panCiphertext!)]));
    for (const { id, row } of stored) {
      const pan = byId.get(id);
      if (pan && row.includes(pan)) throw new Error(`card ${id} stores its PAN in clear`);
    }
  });
});

describe('PAN uniqueness', () => {
  it('draws another PAN when the first collides with an existing card’s fingerprint', async () => {
    const keyring = keyringNow();
    const existing = await h.database.db.select().from(cards).where(eq(cards.issuerId, merchant.id)).limit(1);
    const takenPan = decryptPan(keyring, existing[0]!.id, existing[0]!.panKeyId, existing[0]!.panCiphertext!);
    const freshPan = generatePan('400000');
    const draws = [takenPan, takenPan, freshPan];
    const card = await issueCard(
      {
        db: h.database.db,
        panSecrets: createPanSecrets(h.secrets),
        limits: h.config,
        logger: h.logger,
        drawPan: () => draws.shift()!,
      },
      { userId: merchant.id, role: 'merchant', scopes: [], apiKeyId: 'key_test', tokenId: 't', expiresAt: 0 },
      { userId: owner.id, amount: 100, currency: 'USD' },
    );
    expect(draws).toEqual([]);
    // The card issueCard returns carries no ciphertext (a view's columns): the stored row has it.
    const [stored] = await h.database.db.select().from(cards).where(eq(cards.id, card.id));
    expect(decryptPan(keyring, card.id, stored!.panKeyId, stored!.panCiphertext!)).toBe(freshPan);
    expect(h.logLines.filter((line) => line.includes('collided')).length).toBeGreaterThanOrEqual(2);
    knownPans.add(freshPan);
  });
});

describe('key rotation', () => {
  it('decrypts old rows by key id after a rotation, and reencryptCards moves them to the active key', async () => {
    const oldKeyring = h.secretValues['pan-encryption-keys'];
    const before = await issue(h, merchant.token, { userId: owner.id, amount: 500, currency: 'EUR' });
    const revealQuery = `mutation($id: ID!) { revealCard(id: $id) { pan cvc } }`;
    const revealed = await h.request<{ revealCard: { pan: string; cvc: string } }>(owner.token, revealQuery, { id: before.id });
    const original = revealed.data!.revealCard;

    // Rotate: a new key goes first, the old one stays for decryption.
    const rotated = `k2:${newKey()},${oldKeyring}`;
    h.setSecret('pan-encryption-keys', rotated);
    const after = await issue(h, merchant.token, { userId: owner.id, amount: 500, currency: 'EUR' });
    const keyIdOf = async (id: string) => (await h.database.db.select({ k: cards.panKeyId }).from(cards).where(eq(cards.id, id)))[0]?.k;
    expect(await keyIdOf(after.id)).toBe('k2');
    expect(await keyIdOf(before.id)).toBe('k1');
    const stillReadable = await h.request<{ revealCard: { pan: string; cvc: string } }>(owner.token, revealQuery, { id: before.id });
    expect(stillReadable.data?.revealCard).toEqual(original);

    const [oldKeyCount] = await rowsOf<{ count: number }>(
      h.database.db.execute(sql`select count(*)::int as count from cards.cards where pan_key_id = 'k1'`),
    );
    const underOldKey = oldKeyCount!.count;
    expect(underOldKey).toBeGreaterThan(2_000);
    const keyring = parsePanKeyring(rotated);
    const result = await reencryptCards(h.database, keyring, { batchSize: 97 });
    expect(result).toMatchObject({ reencrypted: underOldKey, skipped: 0, failed: 0, remaining: 0 });
    expect(result.batches).toBe(Math.ceil(underOldKey / 97));
    expect(await keyIdOf(before.id)).toBe('k2');
    expect(await reencryptCards(h.database, keyring)).toEqual({
      reencrypted: 0,
      skipped: 0,
      failed: 0,
      failedCardIds: [],
      batches: 0,
      remaining: 0,
    });

    // Retire the old key: every card still reveals, with the same PAN and CVC.
    h.setSecret('pan-encryption-keys', `k2:${rotated.split(',')[0]!.slice(3)}`);
    const afterRetire = await h.request<{ revealCard: { pan: string; cvc: string } }>(owner.token, revealQuery, { id: before.id });
    expect(afterRetire.data?.revealCard).toEqual(original);
    knownPans.add(original.pan);
  });
});

describe('logs', () => {
  it('wrote no PAN to any log line during the suite', async () => {
    const { pans, findings } = await h.panLeaksInLogs();
    expect(pans).toBeGreaterThan(2_000);
    expect(findings).toEqual([]);
    expect(knownPans.size).toBeGreaterThan(2_000);
    expect(h.logLines.filter((line) => line.includes('card issued')).length).toBeGreaterThanOrEqual(2_000);
    for (const line of h.logLines) {
      if (luhnValidDigitRuns(line, isLuhnValid).length > 0)
        throw new Error(`a log line holds a Luhn-valid digit run: ${line.slice(0, 80)}…`);
      for (const match of line.matchAll(/\d{16}/g)) {
        if (knownPans.has(match[0])) throw new Error('a log line holds a PAN');
      }
    }
  });
});
