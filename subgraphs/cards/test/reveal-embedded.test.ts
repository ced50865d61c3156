import { createDatabase, type DatabaseHandle, migrate, revealAudit } from '@ghostpay/db';
import type { Principal } from '@ghostpay/platform';
import { createSeed } from '@ghostpay/test-support';
import { eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encryptPan, generatePan, parsePanKeyring } from '../src/index.ts';
import { createPanSecrets } from '../src/pan-crypto.ts';
import { revealCard } from '../src/reveal-card.ts';
import { randomCardSecrets, secretsFrom } from './cards-harness.ts';

// The reveal's decision (its one clock reading, sent back as JSON for the audit row's stamp) on the
// embedded PGlite the dev stack runs on, whose driver decodes json and timestamptz on its own.
describe('revealCard on the embedded PGlite database', () => {
  let database: DatabaseHandle;
  const secrets = secretsFrom(randomCardSecrets());
  const panSecrets = createPanSecrets(secrets.provider);
  beforeAll(async () => {
    database = await createDatabase();
    await migrate(database);
  }, 120_000);
  afterAll(async () => {
    await database?.close();
    secrets.provider.close();
  });

  it('reveals an ACTIVE card and refuses an expired one, each audited at the moment it was decided', async () => {
    const seed = createSeed(database.db);
    const [owner, merchant] = [await seed.user('user'), await seed.user('merchant')];
    const principal: Principal = { userId: owner.id, role: 'user', scopes: ['cards:reveal'], apiKeyId: 'k', tokenId: 't', expiresAt: 0 };
    const live = await seed.card({ ownerId: owner.id, issuerId: merchant.id });
    const pan = generatePan('400000');
    const encrypted = encryptPan(parsePanKeyring(secrets.provider.require('pan-encryption-keys')), live.id, pan);
    await database.db.execute(
      sql`update cards.cards set pan_ciphertext = ${encrypted.ciphertext}, pan_key_id = ${encrypted.keyId} where id = ${live.id}`,
    );
    const before = Date.now();
    expect((await revealCard(database.db, panSecrets, principal, live.id, 'req-1')).pan).toBe(pan);

    const expired = await seed.card({ ownerId: owner.id, issuerId: merchant.id, expiresAt: new Date(Date.now() - 1_000) });
    await expect(revealCard(database.db, panSecrets, principal, expired.id, 'req-2')).rejects.toMatchObject({
      extensions: { code: 'BAD_USER_INPUT' },
    });
    const rows = await database.db.select().from(revealAudit).where(eq(revealAudit.actorId, owner.id));
    expect(rows.map((row) => [row.cardId, row.outcome]).sort()).toEqual(
      [
        [live.id, 'REVEALED'],
        [expired.id, 'NOT_ACTIVE'],
      ].sort(),
    );
    for (const row of rows) {
      expect(row.revealedAt).toBeInstanceOf(Date);
      expect(row.revealedAt.getTime()).toBeGreaterThanOrEqual(before - 1);
      expect(row.revealedAt.getTime()).toBeLessThanOrEqual(Date.now() + 1);
    }
  });
});
