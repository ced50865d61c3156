import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { cards, createDatabase, migrate } from '@ghostpay/db';
import { createSeed } from '@ghostpay/test-support';
import { eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CiphertextVersionRefusedError,
  eraseCardPans,
  type PanCiphertextVersion,
  type PanKeyring,
  parsePanKeyring,
  reencryptCards,
} from '../src/index.ts';
import { type CardsHarness, issue, startCardsHarness } from './cards-harness.ts';

const runFile = promisify(execFile);
const cli = fileURLToPath(new URL('../src/reencrypt-cards-cli.ts', import.meta.url));

type Actor = Awaited<ReturnType<CardsHarness['actor']>>;
let h: CardsHarness;
let merchant: Actor;
let owner: Actor;
/** The keyring value the service reads now; `rotate` puts a new key first. */
let keyringValue: string;
let secretsDir: string;

beforeAll(async () => {
  h = await startCardsHarness({ CARDS_HOUSEKEEPING_ENABLED: 'false' });
  [merchant, owner] = await Promise.all([h.actor('merchant'), h.actor('user')]);
  keyringValue = h.secretValues['pan-encryption-keys'];
  secretsDir = mkdtempSync(join(tmpdir(), 'cards-reencrypt-'));
});
afterAll(async () => {
  await h?.close();
  if (secretsDir) rmSync(secretsDir, { recursive: true, force: true });
});

/** Puts a new key `id` first (the service issues under it from now on) and returns the parsed keyring. */
function rotate(id: string): PanKeyring {
  keyringValue = `${id}:${randomBytes(32).toString('base64')},${keyringValue}`;
  h.setSecret('pan-encryption-keys', keyringValue);
  return parsePanKeyring(keyringValue);
}

const issueOne = () => issue(h, merchant.token, { userId: owner.id, amount: 100, currency: 'USD' });
const keyIdOf = async (id: string) => (await h.database.db.select({ k: cards.panKeyId }).from(cards).where(eq(cards.id, id)))[0]?.k;
const revealQuery = `mutation($id: ID!) { revealCard(id: $id) { pan } }`;

/**
 * Holds a row lock on card `id` from another connection of the pool, as an in-flight charge or
 * cancel does (an UPDATE of the row in a transaction that has not committed yet). Returns
 * the release.
 */
async function holdRowLock(id: string): Promise<() => Promise<void>> {
  let release!: () => void;
  const released = new Promise<void>((resolve) => {
    release = resolve;
  });
  let locked!: () => void;
  const lockTaken = new Promise<void>((resolve) => {
    locked = resolve;
  });
  const transaction = h.database.db.transaction(async (tx) => {
    await tx
      .update(cards)
      .set({ status: sql`${cards.status}` })
      .where(eq(cards.id, id));
    locked();
    await released;
  });
  await Promise.race([lockTaken, transaction]);
  return async () => {
    release();
    await transaction;
  };
}

describe('reencryptCards', () => {
  it('reports a row another transaction holds as remaining, and moves it on a rerun once released', async () => {
    const a = await issueOne();
    const b = await issueOne();
    const keyring = rotate('k2');
    const releaseA = await holdRowLock(a.id);
    let first: Awaited<ReturnType<typeof reencryptCards>>;
    try {
      first = await reencryptCards(h.database, keyring);
    } finally {
      await releaseA();
    }
    expect(first).toMatchObject({ reencrypted: 1, skipped: 0, failed: 0, remaining: 1 });
    expect(await keyIdOf(a.id)).toBe('k1');
    expect(await keyIdOf(b.id)).toBe('k2');

    const second = await reencryptCards(h.database, keyring);
    expect(second).toMatchObject({ reencrypted: 1, skipped: 0, failed: 0, remaining: 0 });
    expect(await keyIdOf(a.id)).toBe('k2');
  });

  it('counts an undecryptable row as failed with its id, moves the others, and leaves it remaining', async () => {
    const good1 = await issueOne();
    const corrupt = await issueOne();
    const good2 = await issueOne();
    const [row] = await h.database.db.select({ c: cards.panCiphertext }).from(cards).where(eq(cards.id, corrupt.id));
    const raw = Buffer.from(row!.c!, 'base64');
    raw[raw.length - 1] = raw[raw.length - 1]! ^ 0xff; // flip the GCM tag's last byte
    await h.database.db
      .update(cards)
      .set({ panCiphertext: raw.toString('base64') })
      .where(eq(cards.id, corrupt.id));

    const keyring = rotate('k3');
    // Batches of two: the failure sits in the first and the run goes on to the next ones.
    const result = await reencryptCards(h.database, keyring, { batchSize: 2 });
    expect(result).toMatchObject({ skipped: 0, failed: 1, failedCardIds: [corrupt.id], remaining: 1 });
    expect(result.reencrypted).toBe(4); // a and b of the first test, good1, good2
    expect(await keyIdOf(corrupt.id)).toBe('k2');
    expect(await keyIdOf(good1.id)).toBe('k3');
    expect(await keyIdOf(good2.id)).toBe('k3');
    const revealed = await h.request<{ revealCard: { pan: string } }>(owner.token, revealQuery, { id: good2.id });
    expect(revealed.data?.revealCard.pan).toMatch(/^\d{16}$/);

    // Rerunnable: the same row fails again, nothing else is left.
    expect(await reencryptCards(h.database, keyring)).toMatchObject({
      reencrypted: 0,
      failed: 1,
      failedCardIds: [corrupt.id],
      remaining: 1,
    });
    await h.database.db.delete(cards).where(eq(cards.id, corrupt.id));
  });

  it('lists at most 100 failed card ids while counting all of them', async () => {
    // Seeded rows carry random bytes under key id "seed": with a "seed" key in the keyring
    // every one of them fails authentication.
    const seeded = [];
    for (let i = 0; i < 105; i++) seeded.push(await h.seed.card({ ownerId: owner.id, issuerId: merchant.id }));
    const keyring = parsePanKeyring(`${keyringValue},seed:${randomBytes(32).toString('base64')}`);
    const result = await reencryptCards(h.database, keyring, { batchSize: 50 });
    expect(result).toMatchObject({ reencrypted: 0, failed: 105, remaining: 105 });
    expect(result.failedCardIds).toHaveLength(100);
    for (const id of result.failedCardIds) expect(seeded.some((card) => card.id === id)).toBe(true);
    // Without the key, the same rows are skipped (unknown key id), still remaining.
    expect(await reencryptCards(h.database, parsePanKeyring(keyringValue))).toMatchObject({ skipped: 105, failed: 0, remaining: 105 });
    await h.database.db.delete(cards).where(eq(cards.panKeyId, 'seed'));
  });
});

describe('reencryptCards and the PAN retention', () => {
  it('passes over a row whose PAN was erased: nothing to move, not failed, not remaining', async () => {
    const kept = await issueOne();
    const ended = await issueOne();
    await h.database.db
      .update(cards)
      .set({ status: 'CANCELED', canceledAt: sql`now() - interval '40 days'` })
      .where(eq(cards.id, ended.id));
    expect(await eraseCardPans(h.database.db, 30)).toBe(1);
    const keyring = rotate('k3r');
    const before = await keyIdOf(ended.id);
    expect(await reencryptCards(h.database, keyring)).toMatchObject({ skipped: 0, failed: 0, failedCardIds: [], remaining: 0 });
    expect(await keyIdOf(kept.id)).toBe('k3r');
    const [row] = await h.database.db.select({ c: cards.panCiphertext, k: cards.panKeyId }).from(cards).where(eq(cards.id, ended.id));
    expect(row).toEqual({ c: null, k: before });
  });
});

describe('npm run cards:reencrypt', () => {
  async function runCli(args: string[], env: Record<string, string | undefined> = {}) {
    try {
      const { stdout, stderr } = await runFile(process.execPath, [cli, ...args], {
        env: { ...process.env, DATABASE_URL: h.database.url, SECRETS_DIR: secretsDir, ...env },
        // Opening a PGlite directory takes a few seconds on a busy machine.
        timeout: 60_000,
      });
      return { code: 0, stdout, stderr };
    } catch (error) {
      const failed = error as { code?: number; stdout: string; stderr: string };
      if (typeof failed.code !== 'number') throw error;
      return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
    }
  }
  /** The secret file as a volume delivers it. */
  const writeKeyring = () => writeFileSync(join(secretsDir, 'pan-encryption-keys'), `${keyringValue}\n`);
  const keyMaterial = () => keyringValue.split(',').map((entry) => entry.slice(entry.indexOf(':') + 1));

  it('moves every card to the active key, prints one JSON line and exits 0 when nothing remains', async () => {
    const cardsBefore = [await issueOne(), await issueOne(), await issueOne()];
    rotate('k4');
    writeKeyring();
    const { code, stdout } = await runCli(['--batch-size', '2']);
    expect(stdout.trim().split('\n')).toHaveLength(1);
    const result = JSON.parse(stdout);
    expect(result).toMatchObject({ activeKeyId: 'k4', skipped: 0, failed: 0, failedCardIds: [], remaining: 0 });
    expect(result.reencrypted).toBeGreaterThanOrEqual(3);
    expect(code).toBe(0);
    for (const card of cardsBefore) expect(await keyIdOf(card.id)).toBe('k4');
    for (const key of keyMaterial()) expect(stdout).not.toContain(key);
  });

  it('exits 1 when a bounded run leaves cards behind, and when a row cannot be decrypted', async () => {
    await issueOne();
    await issueOne();
    rotate('k5');
    writeKeyring();
    const bounded = await runCli(['--batch-size', '1', '--max-batches', '1']);
    expect(JSON.parse(bounded.stdout)).toMatchObject({ reencrypted: 1, batches: 1, failed: 0 });
    expect(JSON.parse(bounded.stdout).remaining).toBeGreaterThan(0);
    expect(bounded.code).toBe(1);

    const corrupt = await issueOne();
    await h.database.db
      .update(cards)
      .set({ panCiphertext: randomBytes(40).toString('base64') })
      .where(eq(cards.id, corrupt.id));
    rotate('k6');
    writeKeyring();
    const failing = await runCli([]);
    const result = JSON.parse(failing.stdout);
    expect(result).toMatchObject({ failed: 1, failedCardIds: [corrupt.id], remaining: 1 });
    expect(failing.code).toBe(1);
    for (const key of keyMaterial()) expect(failing.stdout + failing.stderr).not.toContain(key);
    await h.database.db.delete(cards).where(eq(cards.id, corrupt.id));
  });

  it('prints no card data or key material when the database refuses an update, and exits 2', async () => {
    await issueOne();
    rotate('k7');
    writeKeyring();
    // A real failure of the batch's UPDATE: PostgreSQL's error carries the row in its detail,
    // and drizzle's error message lists the statement's parameters (ciphertexts, the card id).
    await h.database.db.execute(
      sql.raw(`create function cards.refuse_reencrypt() returns trigger language plpgsql as $$
        begin
          raise exception using message = 'cards are read-only for this test',
            detail = format('Key (id, pan_ciphertext)=(%s, %s)', new.id, new.pan_ciphertext);
        end $$`),
    );
    await h.database.db.execute(
      sql.raw('create trigger refuse_reencrypt before update on cards.cards for each row execute function cards.refuse_reencrypt()'),
    );
    try {
      const rows = await h.database.db.select({ id: cards.id, ciphertext: cards.panCiphertext }).from(cards);
      const { code, stdout, stderr } = await runCli([]);
      const output = stdout + stderr;
      expect(code).toBe(2);
      expect(stdout).toBe('');
      expect(stderr.trim().split('\n')).toHaveLength(1);
      expect(stderr).toContain('P0001');
      expect(stderr).toContain('cards are read-only for this test');
      for (const row of rows) {
        expect(output).not.toContain(row.id);
        expect(output).not.toContain(row.ciphertext);
      }
      for (const key of keyMaterial()) expect(output).not.toContain(key);
      // The new ciphertext the UPDATE carried is random: no base64 run that long at all.
      expect(output).not.toMatch(/[A-Za-z0-9+/]{32,}/);
    } finally {
      await h.database.db.execute(sql.raw('drop trigger refuse_reencrypt on cards.cards'));
      await h.database.db.execute(sql.raw('drop function cards.refuse_reencrypt()'));
    }
  });

  it("prints no card data a trigger's RAISE put in its message text, only the words around it", async () => {
    const card = await issueOne();
    rotate('k7b');
    writeKeyring();
    // A trigger's message is free text: here it interpolates what an audit trigger might,
    // the card id, its owner, the old and new ciphertexts, the fingerprint and the whole row.
    await h.database.db.execute(
      sql.raw(`create function cards.refuse_reencrypt_loudly() returns trigger language plpgsql as $$
        begin
          raise exception 'refusing card % of % (fingerprint %): % -> % row %', new.id, new.owner_id, new.pan_fingerprint,
            old.pan_ciphertext, new.pan_ciphertext, new;
        end $$`),
    );
    await h.database.db.execute(
      sql.raw(
        'create trigger refuse_reencrypt_loudly before update on cards.cards for each row execute function cards.refuse_reencrypt_loudly()',
      ),
    );
    try {
      const rows = await h.database.db.select().from(cards);
      const { code, stdout, stderr } = await runCli([]);
      expect(code).toBe(2);
      expect(stdout).toBe('');
      expect(stderr.trim().split('\n')).toHaveLength(1);
      expect(stderr).toContain('P0001');
      expect(stderr).toContain('refusing card');
      expect(rows.some((row) => row.id === card.id)).toBe(true);
      for (const row of rows) {
        for (const value of [row.id, row.ownerId, row.issuerId, row.panCiphertext, row.panFingerprint]) expect(stderr).not.toContain(value);
      }
      for (const key of keyMaterial()) expect(stderr).not.toContain(key);
      expect(stderr).not.toMatch(/[A-Za-z0-9+/]{32,}/);
    } finally {
      await h.database.db.execute(sql.raw('drop trigger refuse_reencrypt_loudly on cards.cards'));
      await h.database.db.execute(sql.raw('drop function cards.refuse_reencrypt_loudly()'));
    }
  });

  it('refuses a bad option or a missing keyring with one line on stderr and exit code 2', async () => {
    const badOption = await runCli(['--batch-size', 'lots']);
    expect(badOption.code).toBe(2);
    expect(badOption.stderr).toContain('--batch-size');
    const emptyDir = mkdtempSync(join(tmpdir(), 'cards-reencrypt-empty-'));
    try {
      const missing = await runCli([], { SECRETS_DIR: emptyDir, GHOSTPAY_SECRET_PAN_ENCRYPTION_KEYS: undefined });
      expect(missing.code).toBe(2);
      expect(missing.stderr).toContain('pan-encryption-keys');
      expect(missing.stdout).toBe('');
    } finally {
      rmSync(emptyDir, { recursive: true, force: true });
    }
  });
  it('refuses to guess a PGlite directory without DATABASE_URL, and to open two databases, with exit code 2', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'cards-reencrypt-data-'));
    try {
      writeKeyring();
      const noDatabase = { DATABASE_URL: undefined, GHOSTPAY_DATA_DIR: dataDir };
      const unnamed = await runCli([], noDatabase);
      expect(unnamed.code).toBe(2);
      expect(unnamed.stderr).toContain('--embedded');
      expect(unnamed.stderr).toContain('--data-dir');
      expect(unnamed.stdout).toBe('');
      expect(await runCli(['--embedded', '--data-dir', dataDir], noDatabase)).toMatchObject({ code: 2, stdout: '' });
      expect(await runCli(['--embedded'])).toMatchObject({ code: 2, stdout: '' });
      // A directory that holds no PGlite database: PGlite would create an empty one there.
      const empty = join(dataDir, 'pg');
      mkdirSync(empty);
      const notPglite = await runCli(['--data-dir', empty], noDatabase);
      expect(notPglite).toMatchObject({ code: 2, stdout: '' });
      expect(notPglite.stderr).toContain('no PGlite database');
      expect(readdirSync(empty)).toEqual([]);
      expect(await runCli(['--embedded'], noDatabase)).toMatchObject({ code: 2, stdout: '' });
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('moves the cards of the PGlite directory it is told to open: --embedded or --data-dir', { timeout: 180_000 }, async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'cards-reencrypt-data-'));
    try {
      // An embedded stack's database holding one card issued by the service (same id, so the
      // ciphertext's associated data still matches).
      const issued = await issueOne();
      const [row] = await h.database.db.select().from(cards).where(eq(cards.id, issued.id));
      const pglite = await createDatabase({ dataDir: join(dataDir, 'pglite') });
      try {
        await migrate(pglite);
        const seed = createSeed(pglite.db);
        await seed.user('user', { id: row!.ownerId });
        await seed.user('merchant', { id: row!.issuerId });
        await pglite.db.insert(cards).values(row!);
      } finally {
        await pglite.close();
      }
      rotate('k8');
      writeKeyring();
      const noDatabase = { DATABASE_URL: undefined, GHOSTPAY_DATA_DIR: dataDir };

      // Not even when <GHOSTPAY_DATA_DIR>/pglite exists: without DATABASE_URL it is told, never guesses.
      const unnamed = await runCli([], noDatabase);
      expect(unnamed).toMatchObject({ code: 2, stdout: '' });
      const embedded = await runCli(['--embedded'], noDatabase);
      expect(JSON.parse(embedded.stdout)).toMatchObject({ activeKeyId: 'k8', reencrypted: 1, failed: 0, remaining: 0 });
      expect(embedded.code).toBe(0);
      const named = await runCli(['--data-dir', join(dataDir, 'pglite')], { DATABASE_URL: undefined });
      expect(JSON.parse(named.stdout)).toMatchObject({ activeKeyId: 'k8', reencrypted: 0, remaining: 0 });
      expect(named.code).toBe(0);
      // The service's own database was not touched.
      expect(await keyIdOf(issued.id)).not.toBe('k8');
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('writes --ciphertext-version 2 only when CARDS_PREVIOUS_RELEASE_RETIRED=true, and refuses it otherwise with exit 2', {
    timeout: 180_000,
  }, async () => {
    writeKeyring();
    expect((await runCli([])).code).toBe(0);
    const issued = [await issueOne(), await issueOne()];
    const ciphertexts = async () =>
      Promise.all(
        issued.map(async (card) => (await h.database.db.select({ c: cards.panCiphertext }).from(cards).where(eq(cards.id, card.id)))[0]?.c),
      );
    const before = await ciphertexts();
    for (const env of [{}, { CARDS_PREVIOUS_RELEASE_RETIRED: 'false' }]) {
      const refused = await runCli(['--ciphertext-version', '2'], env);
      expect(refused).toMatchObject({ code: 2, stdout: '' });
      expect(refused.stderr).toContain('CARDS_PREVIOUS_RELEASE_RETIRED=true');
      expect(refused.stderr.trim().split('\n')).toHaveLength(1);
    }
    for (const bad of [
      ['--ciphertext-version', '3'],
      ['--ciphertext-version', 'v2'],
    ]) {
      expect(await runCli(bad, { CARDS_PREVIOUS_RELEASE_RETIRED: 'true' }), bad.join(' ')).toMatchObject({ code: 2, stdout: '' });
    }
    expect(await runCli(['--ciphertext-version', '2'], { CARDS_PREVIOUS_RELEASE_RETIRED: 'yes' })).toMatchObject({ code: 2, stdout: '' });
    expect(await ciphertexts()).toEqual(before);

    const moved = await runCli(['--ciphertext-version', '2'], { CARDS_PREVIOUS_RELEASE_RETIRED: 'true' });
    expect(moved.code).toBe(0);
    expect(JSON.parse(moved.stdout)).toMatchObject({ failed: 0, remaining: 0 });
    for (const ciphertext of await ciphertexts()) expect(ciphertext).toMatch(/^v2:/);
    for (const card of issued) {
      const revealed = await h.request<{ revealCard: { pan: string } }>(owner.token, revealQuery, { id: card.id });
      expect(revealed.data?.revealCard.pan.endsWith(card.last4), card.id).toBe(true);
    }
    // Back to the version this release writes: allowed without the variable.
    const back = await runCli(['--ciphertext-version', '1']);
    expect(back.code).toBe(0);
    for (const ciphertext of await ciphertexts()) expect(ciphertext).not.toMatch(/^v\d+:/);
  });
});

describe('reencryptCards and ciphertext format versions', () => {
  const ciphertextOf = async (id: string) =>
    (await h.database.db.select({ c: cards.panCiphertext }).from(cards).where(eq(cards.id, id)))[0]?.c;

  it('refuses a version newer than this release writes without previousReleaseRetired, before reading or writing a row', async () => {
    const keyring = parsePanKeyring(keyringValue);
    const issued = await issueOne();
    // Issued under the key that is no longer active: a run that started would move it.
    const rotated = rotate('k9');
    const before = await ciphertextOf(issued.id);
    for (const options of [{ version: 2 as const }, { version: 2 as const, previousReleaseRetired: false }]) {
      await expect(reencryptCards(h.database, rotated, options)).rejects.toBeInstanceOf(CiphertextVersionRefusedError);
    }
    const [v2] = await h.database.db.select({ n: sql<number>`count(*)::int` }).from(cards).where(sql`${cards.panCiphertext} like 'v2:%'`);
    expect(v2?.n).toBe(0);
    expect(await ciphertextOf(issued.id)).toBe(before);
    expect(await keyIdOf(issued.id)).toBe(keyring.activeKeyId);
    // A version no release reads is refused whatever the caller says.
    const unknown = { version: 3 as unknown as PanCiphertextVersion, previousReleaseRetired: true };
    await expect(reencryptCards(h.database, rotated, unknown)).rejects.toBeInstanceOf(RangeError);
    expect(await ciphertextOf(issued.id)).toBe(before);
    // The version this release writes needs no flag.
    expect(await reencryptCards(h.database, rotated, { version: 1 })).toMatchObject({ failed: 0, remaining: 0 });
    expect(await keyIdOf(issued.id)).toBe('k9');
  });

  it('moves rows under the active key to another format, which still reveals, and counts the rows not in it', async () => {
    const keyring = parsePanKeyring(keyringValue);
    // Everything else the suite left is moved first, so the counts below are this test's cards.
    await reencryptCards(h.database, keyring);
    const issued = [await issueOne(), await issueOne()];
    for (const card of issued) expect(await ciphertextOf(card.id)).not.toMatch(/^v\d+:/);
    // By default (the version this release writes, 1) nothing is due: the active key, the same format.
    expect(await reencryptCards(h.database, keyring)).toMatchObject({ reencrypted: 0, remaining: 0 });
    const toV2 = await reencryptCards(h.database, keyring, { version: 2, batchSize: 1, previousReleaseRetired: true });
    expect(toV2.reencrypted).toBeGreaterThanOrEqual(2);
    expect(toV2).toMatchObject({ failed: 0, skipped: 0, remaining: 0 });
    for (const card of issued) {
      expect(await ciphertextOf(card.id)).toMatch(/^v2:/);
      expect(await keyIdOf(card.id)).toBe(keyring.activeKeyId);
      const revealed = await h.request<{ revealCard: { pan: string } }>(owner.token, revealQuery, { id: card.id });
      expect(revealed.data?.revealCard.pan, card.id).toMatch(/^\d{16}$/);
      expect(revealed.data?.revealCard.pan.endsWith(card.last4)).toBe(true);
    }
    // Version 2 rows are not in the format this release writes: counted, and moved back by a run for 1.
    const [due] = await h.database.db.select({ n: sql<number>`count(*)::int` }).from(cards).where(sql`${cards.panCiphertext} like 'v2:%'`);
    expect(due?.n).toBe(toV2.reencrypted);
    const back = await reencryptCards(h.database, keyring);
    expect(back).toMatchObject({ reencrypted: toV2.reencrypted, remaining: 0 });
    for (const card of issued) expect(await ciphertextOf(card.id)).not.toMatch(/^v\d+:/);
  });
});
