import { randomBytes } from 'node:crypto';
import { cardIdempotencyKeys, cards, charges, type Database, newId, revealAudit } from '@ghostpay/db';
import { whileAnotherTransactionHolds } from '@ghostpay/test-support';
import { and, eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decryptPan, eraseCardPans, expireCards, parsePanKeyring, reencryptCards } from '../src/index.ts';
import { issueRequestFingerprint } from '../src/issue-card.ts';
import { type CardsHarness, type IssuedCard, issue, issueCardMutation, startCardsHarness } from './cards-harness.ts';

/**
 * The cards' state changes racing each other on real PostgreSQL: issuance retries, cancel against
 * a charge's authorization and against itself, reveal against the housekeeping and a
 * re-encryption, the housekeeping on two replicas, re-encryption against the PAN erasure. Every
 * race is arranged by lock waits (another transaction holds the row, the writers queue behind it
 * in a known order, `untilWaiting` sees them queued), never by sleeps.
 */

type Actor = Awaited<ReturnType<CardsHarness['actor']>>;
let h: CardsHarness;
let merchant: Actor;

beforeAll(async () => {
  h = await startCardsHarness({ CARDS_HOUSEKEEPING_ENABLED: 'false' });
  merchant = await h.actor('merchant');
});
afterAll(async () => {
  await h?.close();
});

/**
 * Runs `work` in a transaction of its own and keeps it open (its row locks held) until `end`:
 * another replica's housekeeping batch, a re-encryption batch, a charge in flight.
 */
async function holdOpen<T>(work: (tx: Database) => Promise<T>): Promise<{ result: T; end(commit: boolean): Promise<void> }> {
  let finish!: (commit: boolean) => void;
  const finished = new Promise<boolean>((resolve) => {
    finish = resolve;
  });
  let started!: (result: T) => void;
  const ready = new Promise<T>((resolve) => {
    started = resolve;
  });
  const rolledBack = new Error('rolled back on purpose');
  const transaction = h.database.db
    .transaction(async (tx) => {
      started(await work(tx as unknown as Database));
      if (!(await finished)) throw rolledBack;
    })
    .catch((error: unknown) => {
      if (error !== rolledBack) throw error;
    });
  const result = await Promise.race([ready, transaction.then(() => Promise.reject(new Error('the held transaction ended early')))]);
  return {
    result,
    async end(commit: boolean) {
      finish(commit);
      await transaction;
    },
  };
}

/** Resolves once `n` backends of this database wait for a lock (a row, a key another transaction inserts). */
async function untilWaiting(n: number, timeoutMs = 10_000): Promise<void> {
  const pool = h.database.pool;
  if (!pool) throw new Error('needs PostgreSQL');
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { rows } = await pool.query<{ n: number }>(
      `select count(*)::int as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'`,
    );
    if (rows[0]!.n >= n) return;
    if (Date.now() > deadline) throw new Error(`${rows[0]!.n} backends waited for a lock, not ${n}, within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

const lockCard = (id: string) => (tx: Database) => tx.execute(sql`select id from cards.cards where id = ${id} for no key update`);
const cardRow = async (id: string) => (await h.database.db.select().from(cards).where(eq(cards.id, id)))[0]!;

const cancelMutation = `mutation Cancel($id: ID!) { cancelCard(id: $id) { id status canceledAt usedAt } }`;
type CancelAnswer = { cancelCard: { id: string; status: string; canceledAt: string | null; usedAt: string | null } };
const cancel = (token: string, id: string) => h.request<CancelAnswer>(token, cancelMutation, { id });

const revealMutation = `mutation Reveal($id: ID!) { revealCard(id: $id) { pan cvc } }`;
const reveal = (token: string, id: string) => h.request<{ revealCard: { pan: string; cvc: string } }>(token, revealMutation, { id });
const auditOutcomes = async (cardId: string) =>
  (await h.database.db.select({ outcome: revealAudit.outcome }).from(revealAudit).where(eq(revealAudit.cardId, cardId))).map(
    (row) => row.outcome,
  );

/**
 * A charge's authorization as the charges subgraph writes it (`writeCharge` in
 * subgraphs/charges/src/authorize-charge.ts; subgraphs may not import each other): in one
 * transaction, lock the card row, read the clock after the lock, take the card ACTIVE → USED when
 * it is unexpired with room for the amount, and insert the charge only if it did, AUTHORIZED,
 * stamped with that reading. Answers the charge's status: AUTHORIZED, or DECLINED (nothing written).
 */
async function charge(cardId: string): Promise<'AUTHORIZED' | 'DECLINED'> {
  const result = (await h.database.db.execute(sql`
    with locked as materialized (
      select id from ${cards} where id = ${cardId} and issuer_id = ${merchant.id} for no key update
    ),
    held as materialized (select id, clock_timestamp() as at from locked),
    taken as (
      update ${cards} set status = 'USED', used_at = date_trunc('milliseconds', (select at from held))
      where id = (select id from held) and status = 'ACTIVE' and expires_at > (select at from held)
        and currency = 'USD' and amount >= 1000 and issuer_id = ${merchant.id}
      returning id, used_at as at
    )
    insert into ${charges} (id, card_id, merchant_id, amount, currency, status, created_at, authorized_at, updated_at)
    select ${newId('ch')}, taken.id, ${merchant.id}, 1000, 'USD', 'AUTHORIZED', now(), taken.at, taken.at from taken
    returning id
  `)) as unknown as { rows: unknown[] };
  return result.rows.length === 1 ? 'AUTHORIZED' : 'DECLINED';
}
const chargesOf = (cardId: string) =>
  h.database.db.select({ status: charges.status, declineCode: charges.declineCode }).from(charges).where(eq(charges.cardId, cardId));

describe('cancelCard racing a charge on the same card', () => {
  it('a charge queued first takes the card; the cancel queued behind it finds it USED and changes nothing', async () => {
    const owner = await h.actor('user');
    const card = await h.seed.card({ ownerId: owner.id, issuerId: merchant.id, amount: 5_000 });
    const holder = await holdOpen(lockCard(card.id));
    const charged = charge(card.id);
    await untilWaiting(1);
    const canceled = cancel(owner.token, card.id);
    await untilWaiting(2);
    await holder.end(true);
    expect(await charged).toBe('AUTHORIZED');
    expect((await canceled).errors?.[0]?.extensions?.fields).toEqual([
      { field: 'id', message: 'card is USED and can no longer be canceled' },
    ]);
    expect(await cardRow(card.id)).toMatchObject({ status: 'USED', canceledAt: null, usedAt: expect.any(Date) });
    expect(await chargesOf(card.id)).toEqual([{ status: 'AUTHORIZED', declineCode: null }]);
  });

  it('a cancel queued first cancels the card; the charge queued behind it is declined and writes no charge', async () => {
    const owner = await h.actor('user');
    const card = await h.seed.card({ ownerId: owner.id, issuerId: merchant.id, amount: 5_000 });
    const holder = await holdOpen(lockCard(card.id));
    const canceled = cancel(owner.token, card.id);
    await untilWaiting(1);
    const charged = charge(card.id);
    await untilWaiting(2);
    await holder.end(true);
    expect((await canceled).data?.cancelCard).toMatchObject({ status: 'CANCELED', usedAt: null });
    expect(await charged).toBe('DECLINED');
    expect(await cardRow(card.id)).toMatchObject({ status: 'CANCELED', usedAt: null, canceledAt: expect.any(Date) });
    expect(await chargesOf(card.id)).toEqual([]);
  });

  it('released together on 6 cards, each card ends USED with its charge or CANCELED with none, never both', async () => {
    const owner = await h.actor('user');
    const ids: string[] = [];
    for (let i = 0; i < 6; i++) ids.push((await h.seed.card({ ownerId: owner.id, issuerId: merchant.id, amount: 5_000 })).id);
    // One transaction holds all six (the pool is shared with the service: a connection per holder would run it dry).
    const holder = await holdOpen((tx) => tx.execute(sql`select id from cards.cards where id in ${ids} for no key update`));
    const races = ids.map((id) => Promise.all([charge(id), cancel(owner.token, id)]));
    await untilWaiting(12);
    await holder.end(true);
    for (const [index, race] of races.entries()) {
      const [charged, canceled] = await race;
      const row = await cardRow(ids[index]!);
      const authorized = (await chargesOf(row.id)).filter((c) => c.status === 'AUTHORIZED');
      if (row.status === 'USED') {
        expect(charged).toBe('AUTHORIZED');
        expect(authorized).toHaveLength(1);
        expect(row.canceledAt).toBeNull();
        expect(canceled.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
      } else {
        expect(row.status).toBe('CANCELED');
        expect(charged).toBe('DECLINED');
        expect(authorized).toEqual([]);
        expect(row.usedAt).toBeNull();
        expect(canceled.data?.cancelCard.status).toBe('CANCELED');
      }
    }
  });
});

describe('cancelCard racing cancelCard', () => {
  it('five cancels queued on one card all answer CANCELED with the one canceledAt the first stamped', async () => {
    const owner = await h.actor('user');
    const card = await h.seed.card({ ownerId: owner.id, issuerId: merchant.id });
    const holder = await holdOpen(lockCard(card.id));
    const answers = Promise.all([...Array(5)].map(() => cancel(owner.token, card.id)));
    await untilWaiting(5);
    await holder.end(true);
    const answered = await answers;
    const row = await cardRow(card.id);
    expect(row.status).toBe('CANCELED');
    for (const answer of answered) {
      expect(answer.errors).toBeUndefined();
      expect(answer.data?.cancelCard).toMatchObject({ status: 'CANCELED', canceledAt: row.canceledAt!.toISOString() });
    }
  });
});

describe('revealCard queued with a charge and a cancel on one card', () => {
  it('each is decided in queue order on the card as the one before left it, every reveal audited as it was answered', async () => {
    const user = await h.actor('user');
    const card = await issue(h, merchant.token, { userId: user.id, amount: 5_000, currency: 'USD' });
    const holder = await holdOpen(lockCard(card.id));
    // reveal, charge, reveal, cancel, reveal: each queued behind the one before (a reveal's share
    // lock waits behind a charge or cancel already waiting, it does not overtake it).
    const first = reveal(user.token, card.id);
    await untilWaiting(1);
    const charged = charge(card.id);
    await untilWaiting(2);
    const second = reveal(user.token, card.id);
    await untilWaiting(3);
    const canceled = cancel(user.token, card.id);
    await untilWaiting(4);
    const third = reveal(user.token, card.id);
    await untilWaiting(5);
    await holder.end(true);
    expect((await first).data?.revealCard.pan).toMatch(/^\d{16}$/);
    expect(await charged).toBe('AUTHORIZED');
    for (const refused of [await second, await third]) {
      expect(refused.errors?.[0]?.extensions?.fields).toEqual([
        { field: 'id', message: 'card is USED; only an ACTIVE card can be revealed' },
      ]);
    }
    expect((await canceled).errors?.[0]?.extensions?.fields).toEqual([
      { field: 'id', message: 'card is USED and can no longer be canceled' },
    ]);
    expect((await auditOutcomes(card.id)).sort()).toEqual(['NOT_ACTIVE', 'NOT_ACTIVE', 'REVEALED']);
    expect(await cardRow(card.id)).toMatchObject({ status: 'USED', canceledAt: null });
  });
});

describe('the reveal audit trail after a wait', () => {
  it('stamps a refusal with when it was decided: a card that expired while the reveal waited is refused at or after its expiry', async () => {
    const user = await h.actor('user');
    const expiresAt = new Date(Date.now() + 1_000);
    const card = await h.seed.card({ ownerId: user.id, issuerId: merchant.id, expiresAt });
    const pool = h.database.pool;
    if (!pool) throw new Error('needs PostgreSQL');
    // Another writer (a charge that rolls back, a re-encryption batch) holds the card past its expiry.
    const { result } = await whileAnotherTransactionHolds(
      pool,
      ['select id from cards.cards where id = $1 for no key update'],
      [card.id],
      () => reveal(user.token, card.id),
      () => expiresAt.getTime() - Date.now() + 300,
    );
    expect(result.errors?.[0]?.extensions?.fields).toEqual([
      { field: 'id', message: 'card is EXPIRED; only an ACTIVE card can be revealed' },
    ]);
    const rows = await h.database.db
      .select({ at: revealAudit.revealedAt, outcome: revealAudit.outcome })
      .from(revealAudit)
      .where(eq(revealAudit.cardId, card.id));
    expect(rows.map((row) => row.outcome)).toEqual(['NOT_ACTIVE']);
    // Not the reveal's start (before its wait, when the card was still valid): the audit row would
    // say the card was refused as expired at a moment it had not expired yet.
    expect(rows[0]!.at.getTime()).toBeGreaterThanOrEqual(expiresAt.getTime());
  });
});

describe('issueCard retries racing on one key', () => {
  const owner = () => h.actor('user');

  it.each([
    ['commits', true],
    ['rolls back', false],
  ] as const)(
    'while the request holding the key %s: one card, the same input gets it, another input IDEMPOTENCY_KEY_REUSED',
    async (_name, commit) => {
      const user = await owner();
      const key = `held-${randomBytes(4).toString('hex')}`;
      const inputA = { userId: user.id, amount: 111, currency: 'USD' };
      const inputB = { userId: user.id, amount: 222, currency: 'USD' };
      // The request holding the key: its card and its key row, not committed yet.
      const earlier = await h.seed.card({ ownerId: user.id, issuerId: merchant.id, amount: 111 });
      const holder = await holdOpen((tx) =>
        tx
          .insert(cardIdempotencyKeys)
          .values({ issuerId: merchant.id, key, fingerprint: issueRequestFingerprint(inputA), cardId: earlier.id }),
      );
      const answers = Promise.all(
        [inputA, inputB, inputA, inputB, inputA, inputB].map((input) =>
          h.request<{ issueCard: IssuedCard }>(merchant.token, issueCardMutation, { input, key }),
        ),
      );
      await untilWaiting(6);
      await holder.end(commit);
      const results = await answers;
      const [stored] = await h.database.db
        .select()
        .from(cardIdempotencyKeys)
        .where(and(eq(cardIdempotencyKeys.issuerId, merchant.id), eq(cardIdempotencyKeys.key, key)));
      expect(stored).toBeDefined();
      const winner = stored!.cardId;
      if (commit) expect(winner).toBe(earlier.id);
      const winnerAmount = (await cardRow(winner)).amount;
      results.forEach((result, index) => {
        const input = index % 2 === 0 ? inputA : inputB;
        if (input.amount === winnerAmount) expect(result.data?.issueCard.id, JSON.stringify(result.errors)).toBe(winner);
        else expect(result.errors?.[0]?.extensions?.code).toBe('IDEMPOTENCY_KEY_REUSED');
      });
      // No orphan: the merchant's cards for this owner are the seeded one (kept whatever happened to
      // its key) and, when the holder rolled back, the one card the key now names.
      const owned = await h.database.db.select({ id: cards.id }).from(cards).where(eq(cards.ownerId, user.id));
      expect(owned.map((c) => c.id).sort()).toEqual([...new Set([earlier.id, winner])].sort());
    },
  );
});

describe('issueCard whose key is pruned between its conflict and the re-read', () => {
  it('answers IDEMPOTENCY_KEY_IN_USE with retryAfter (not INTERNAL_SERVER_ERROR), and the retry issues one card', async () => {
    const user = await h.actor('user');
    const key = `pruned-${randomBytes(4).toString('hex')}`;
    const input = { userId: user.id, amount: 333, currency: 'USD' };
    const earlier = await h.seed.card({ ownerId: user.id, issuerId: merchant.id, amount: 333 });
    // The request holding the key: its key row, not committed yet (the retry's first read misses it).
    const holder = await holdOpen((tx) =>
      tx
        .insert(cardIdempotencyKeys)
        .values({ issuerId: merchant.id, key, fingerprint: issueRequestFingerprint(input), cardId: earlier.id }),
    );
    const answer = h.request<{ issueCard: IssuedCard }>(merchant.token, issueCardMutation, { input, key });
    await untilWaiting(1);
    // The prune, queued behind both (a table lock stands in for its timing): it deletes the key
    // once the holder committed it and the retry's insert met it, before the retry re-reads it.
    const pruned = h.database.db.transaction(async (tx) => {
      await tx.execute(sql`lock table ${cardIdempotencyKeys} in access exclusive mode`);
      await tx.delete(cardIdempotencyKeys).where(and(eq(cardIdempotencyKeys.issuerId, merchant.id), eq(cardIdempotencyKeys.key, key)));
    });
    await untilWaiting(2);
    await holder.end(true);
    await pruned;
    const result = await answer;
    expect(result.data?.issueCard ?? null).toBeNull();
    expect(result.errors?.[0]?.extensions).toMatchObject({ code: 'IDEMPOTENCY_KEY_IN_USE', retryAfter: 1 });
    expect(result.errors?.[0]?.message).toMatch(/retry with the same key/);
    // Nothing half-written: the rolled-back attempt left no card, and the key is gone.
    expect((await h.database.db.select({ id: cards.id }).from(cards).where(eq(cards.ownerId, user.id))).map((c) => c.id)).toEqual([
      earlier.id,
    ]);
    // The retry the error asks for is a new request (the key was pruned): one new card, under the key.
    const retried = await h.request<{ issueCard: IssuedCard }>(merchant.token, issueCardMutation, { input, key });
    const card = retried.data?.issueCard;
    expect(card, JSON.stringify(retried.errors)).toBeDefined();
    const again = await h.request<{ issueCard: IssuedCard }>(merchant.token, issueCardMutation, { input, key });
    expect(again.data?.issueCard.id).toBe(card!.id);
  });
});

describe('revealCard racing the housekeeping and a re-encryption', () => {
  it('waits for a sweep batch holding the card and refuses it EXPIRED, audited', async () => {
    const user = await h.actor('user');
    const card = await issue(h, merchant.token, { userId: user.id, amount: 10, currency: 'USD' });
    await h.database.db.update(cards).set({ expiresAt: sql`now() - interval '1 second'` }).where(eq(cards.id, card.id));
    const sweep = await holdOpen((tx) => expireCards(tx));
    expect(sweep.result).toBeGreaterThanOrEqual(1);
    const revealed = reveal(user.token, card.id);
    await untilWaiting(1);
    await sweep.end(true);
    const result = await revealed;
    expect(result.errors?.[0]?.extensions?.fields).toEqual([
      { field: 'id', message: 'card is EXPIRED; only an ACTIVE card can be revealed' },
    ]);
    expect(await auditOutcomes(card.id)).toEqual(['NOT_ACTIVE']);
  });

  it('waits for the erasure holding a canceled card and refuses it, audited, with no PAN', async () => {
    const user = await h.actor('user');
    const card = await issue(h, merchant.token, { userId: user.id, amount: 10, currency: 'USD' });
    expect((await cancel(user.token, card.id)).data?.cancelCard.status).toBe('CANCELED');
    const erasure = await holdOpen((tx) => eraseCardPans(tx, 0));
    expect(erasure.result).toBeGreaterThanOrEqual(1);
    const revealed = reveal(user.token, card.id);
    await untilWaiting(1);
    await erasure.end(true);
    const result = await revealed;
    expect(result.errors?.[0]?.extensions?.fields).toEqual([
      { field: 'id', message: 'card is CANCELED; only an ACTIVE card can be revealed' },
    ]);
    expect(JSON.stringify(result)).not.toMatch(/\d{16}/);
    expect(await auditOutcomes(card.id)).toEqual(['NOT_ACTIVE']);
    expect((await cardRow(card.id)).panCiphertext).toBeNull();
  });
});

describe('the housekeeping on two replicas at once', () => {
  it('sweeps and erases every due card exactly once, the second replica skipping what the first holds', async () => {
    const ids = { ownerId: (await h.actor('user')).id, issuerId: merchant.id };
    // Everything earlier tests left due is swept and erased first: the counts below are this test's.
    await expireCards(h.database.db);
    await eraseCardPans(h.database.db, 0);
    const expired = [];
    for (let i = 0; i < 12; i++) expired.push((await h.seed.card({ ...ids, expiresAt: new Date(Date.now() - 60_000) })).id);
    const canceled = [];
    for (let i = 0; i < 6; i++) canceled.push((await h.seed.card({ ...ids, status: 'CANCELED' })).id);
    await h.database.db.update(cards).set({ canceledAt: sql`now() - interval '1 day'` }).where(eq(cards.status, 'CANCELED'));
    // Replica A's sweep, batches of 5, not committed yet.
    const replicaA = await holdOpen((tx) => expireCards(tx, 5));
    expect(replicaA.result).toBe(12);
    // Replica B's whole pass meanwhile: nothing waited for (a wait would hit the timeout), nothing of A's taken.
    const replicaB = await h.database.db.transaction(async (tx) => {
      await tx.execute(sql`set local statement_timeout = 2000`);
      return { expired: await expireCards(tx as unknown as Database, 5), erased: await eraseCardPans(tx as unknown as Database, 0, 5) };
    });
    expect(replicaB).toEqual({ expired: 0, erased: 6 });
    await replicaA.end(true);
    // A's erasure, after its sweep committed; then both again find nothing.
    const [a, b] = await Promise.all([eraseCardPans(h.database.db, 0, 5), eraseCardPans(h.database.db, 0, 5)]);
    expect(a + b).toBe(12);
    expect(await Promise.all([expireCards(h.database.db, 5), eraseCardPans(h.database.db, 0, 5)])).toEqual([0, 0]);
    for (const id of expired) expect(await cardRow(id)).toMatchObject({ status: 'EXPIRED', panCiphertext: null });
    for (const id of canceled) expect(await cardRow(id)).toMatchObject({ status: 'CANCELED', panCiphertext: null });
  });
});

describe('re-encryption racing reveal and the PAN erasure', () => {
  /** Puts a new key first in the service's keyring; returns the parsed keyring and the old value. */
  function rotate(id: string) {
    const old = h.secrets.require('pan-encryption-keys');
    const value = `${id}:${randomBytes(32).toString('base64')},${old}`;
    h.setSecret('pan-encryption-keys', value);
    return { keyring: parsePanKeyring(value), old, value };
  }
  const panOf = async (id: string) => {
    const row = await cardRow(id);
    return decryptPan(parsePanKeyring(h.secrets.require('pan-encryption-keys')), id, row.panKeyId, row.panCiphertext!);
  };

  it('a reveal that waited for a re-encryption batch reads the row the batch left, under the new key', async () => {
    const user = await h.actor('user');
    const card = await issue(h, merchant.token, { userId: user.id, amount: 10, currency: 'USD' });
    const pan = await panOf(card.id);
    const { keyring, old } = rotate('k-race');
    const batch = await holdOpen((tx) => reencryptCards({ db: tx }, keyring));
    expect(batch.result.reencrypted).toBeGreaterThanOrEqual(1);
    const revealed = reveal(user.token, card.id);
    await untilWaiting(1);
    // The old key leaves the service's keyring before the batch commits: a reveal that decided on
    // the version it read before the wait (the old ciphertext) could not decrypt it.
    h.setSecret('pan-encryption-keys', `k-race:${keyring.keys.get('k-race')!.toString('base64')}`);
    try {
      await batch.end(true);
      const result = await revealed;
      expect(result.errors).toBeUndefined();
      expect(result.data?.revealCard.pan).toBe(pan);
    } finally {
      h.setSecret('pan-encryption-keys', `k-race:${keyring.keys.get('k-race')!.toString('base64')},${old}`);
    }
    expect((await cardRow(card.id)).panKeyId).toBe('k-race');
    expect(await auditOutcomes(card.id)).toEqual(['REVEALED']);
  });

  it('an issue and its reveal go through while a re-encryption batch holds the older rows; every card reveals after', async () => {
    const user = await h.actor('user');
    const older = await issue(h, merchant.token, { userId: user.id, amount: 10, currency: 'USD' });
    const olderPan = await panOf(older.id);
    const { keyring } = rotate('k-issue');
    const batch = await holdOpen((tx) => reencryptCards({ db: tx }, keyring));
    expect(batch.result.reencrypted).toBeGreaterThanOrEqual(1);
    try {
      // Not held up by the batch: a new card, under the new key, not among the rows it moves.
      const fresh = await issue(h, merchant.token, { userId: user.id, amount: 10, currency: 'USD' });
      expect((await cardRow(fresh.id)).panKeyId).toBe('k-issue');
      expect((await reveal(user.token, fresh.id)).data?.revealCard.pan).toBe(await panOf(fresh.id));
    } finally {
      await batch.end(true);
    }
    expect((await cardRow(older.id)).panKeyId).toBe('k-issue');
    expect((await reveal(user.token, older.id)).data?.revealCard.pan).toBe(olderPan);
    const rerun = await reencryptCards(h.database, keyring);
    expect(rerun).toMatchObject({ reencrypted: 0, failed: 0 });
  });

  it('never brings an erased PAN back, whichever holds the row first', async () => {
    const user = await h.actor('user');
    const first = await issue(h, merchant.token, { userId: user.id, amount: 10, currency: 'USD' });
    const second = await issue(h, merchant.token, { userId: user.id, amount: 10, currency: 'USD' });
    for (const card of [first, second]) expect((await cancel(user.token, card.id)).data?.cancelCard.status).toBe('CANCELED');
    const { keyring } = rotate('k-erase');

    // The erasure holds `first` (erased, not committed): the re-encryption passes over it.
    const erasure = await holdOpen((tx) => eraseCardPans(tx, 0));
    expect(erasure.result).toBeGreaterThanOrEqual(2);
    const during = await reencryptCards(h.database, keyring);
    expect(during.remaining).toBeGreaterThanOrEqual(2);
    await erasure.end(true);
    for (const card of [first, second]) expect((await cardRow(card.id)).panCiphertext).toBeNull();
    const after = await reencryptCards(h.database, keyring);
    for (const card of [first, second]) expect((await cardRow(card.id)).panCiphertext).toBeNull();
    expect(after.failed).toBe(0);

    // The re-encryption holds a terminal card (moved, not committed): the erasure passes over it,
    // and erases it once the batch committed; a later run finds nothing to move.
    const third = await issue(h, merchant.token, { userId: user.id, amount: 10, currency: 'USD' });
    expect((await cancel(user.token, third.id)).data?.cancelCard.status).toBe('CANCELED');
    const next = rotate('k-erase2');
    const batch = await holdOpen((tx) => reencryptCards({ db: tx }, next.keyring));
    expect(batch.result.reencrypted).toBeGreaterThanOrEqual(1);
    const skipped = await h.database.db.transaction(async (tx) => {
      await tx.execute(sql`set local statement_timeout = 2000`);
      return eraseCardPans(tx as unknown as Database, 0);
    });
    expect(skipped).toBe(0);
    await batch.end(true);
    expect((await cardRow(third.id)).panKeyId).toBe('k-erase2');
    expect(await eraseCardPans(h.database.db, 0)).toBeGreaterThanOrEqual(1);
    expect((await cardRow(third.id)).panCiphertext).toBeNull();
    const rerun = await reencryptCards(h.database, next.keyring);
    expect((await cardRow(third.id)).panCiphertext).toBeNull();
    expect(rerun.failed).toBe(0);
  });
});
