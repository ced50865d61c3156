import { createDatabase, type DatabaseHandle, migrate } from '@ghostpay/db';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCardLoader, createCardsByIds } from '../src/card-loader.ts';
import { toCardView } from '../src/card-view.ts';

// The throwaway PostgreSQL cluster's side is in card-access.test.ts (statement texts included);
// this is the embedded PGlite the dev stack runs on, where the array parameter goes through
// PGlite's own serialisation rather than node-postgres's.
describe('the card loader on the embedded PGlite database', () => {
  let database: DatabaseHandle;
  const awkward = `card_'q"{a,b}\\`;
  beforeAll(async () => {
    database = await createDatabase();
    await migrate(database);
    // Bare rows (no owner or issuer rows behind them): only the loader's lookups are under test.
    await database.db.execute(sql`set session_replication_role = replica`);
    for (const [id, amount] of [
      ['card_a', 100],
      ['card_b', 250],
      [awkward, 999],
    ] as const) {
      await database.db.execute(sql`
        insert into cards.cards (id, owner_id, issuer_id, pan_ciphertext, pan_key_id, pan_fingerprint, bin, last4, brand,
          exp_month, exp_year, expires_at, amount, currency)
        values (${id}, 'usr_owner', 'usr_issuer', 'ciphertext', 'k1', ${`fp-${id}`}, '424242', '4242', 'visa', 1, 2030, now(), ${amount}, 'USD')`);
    }
  }, 120_000);
  afterAll(async () => {
    await database?.close();
  });

  it('finds one card, a batch and ids with quotes, braces, commas and backslashes, and nothing for unknown ids', async () => {
    const byIds = createCardsByIds(database.db);
    expect((await byIds(['card_b'])).map((row) => [row.id, row.amount, row.currency])).toEqual([['card_b', 250, 'USD']]);
    expect((await byIds(['card_a', 'card_unknown', 'card_b'])).map((row) => row.id).sort()).toEqual(['card_a', 'card_b']);
    expect((await byIds([awkward, 'card_a'])).map((row) => row.id).sort()).toEqual([awkward, 'card_a'].sort());
    expect(await byIds(['card_unknown'])).toEqual([]);
    expect(await byIds(['card_unknown', 'card_unknown_2'])).toEqual([]);
  });

  it('answers each id in the order asked, undefined for an unknown one', async () => {
    const loader = createCardLoader(createCardsByIds(database.db));
    const cards = await Promise.all(['card_b', 'card_unknown', awkward, 'card_a'].map((id) => loader.load(id)));
    expect(cards.map((card) => card?.id)).toEqual(['card_b', undefined, awkward, 'card_a']);
    expect(cards[0]?.expiresAt).toBeInstanceOf(Date);
  });

  it('reads expiry as the database judges it, a boolean `expired` column, for one card and for a batch', async () => {
    // No clock skew here: PGlite runs in this process, on this process's clock (a faked Date moves
    // the database's now() too). The replica-skew cases run on PostgreSQL (database-clock.test.ts);
    // this shows the column comes back as a boolean through PGlite (a 'f' string would read as
    // expired) on both statement shapes.
    for (const [id, expiresAt] of [
      ['card_lapsed', sql`now() - interval '1 minute'`],
      ['card_live', sql`now() + interval '1 minute'`],
    ] as const) {
      await database.db.execute(sql`
        insert into cards.cards (id, owner_id, issuer_id, pan_ciphertext, pan_key_id, pan_fingerprint, bin, last4, brand,
          exp_month, exp_year, expires_at, amount, currency)
        values (${id}, 'usr_owner', 'usr_issuer', 'ciphertext', 'k1', ${`fp-${id}`}, '424242', '4242', 'visa', 1, 2030, ${expiresAt}, 100, 'USD')`);
    }
    const byIds = createCardsByIds(database.db);
    const judged = [...(await byIds(['card_live'])), ...(await byIds(['card_lapsed', 'card_live']))];
    expect(judged.map((row) => [row.id, row.expired, toCardView(row).status]).sort()).toEqual([
      ['card_lapsed', true, 'EXPIRED'],
      ['card_live', false, 'ACTIVE'],
      ['card_live', false, 'ACTIVE'],
    ]);
  });
});
