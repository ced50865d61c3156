import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import {
  cards,
  chargeEvents,
  chargeIdempotencyKeys,
  charges,
  createDatabase,
  type Database,
  embeddedDatabaseDir,
  newId,
} from '@ghostpay/db';
import { eq, sql } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { authorizeCharge, checkLedger, refundCharge, settleAllDue } from '../src/index.ts';
import { merchantDatabase } from './charges-harness.ts';

const run = promisify(execFile);
const cli = fileURLToPath(new URL('../src/ledger-check-cli.ts', import.meta.url));

/**
 * Since migration 0002 the database itself refuses most of the rows these tests plant (its CHECK
 * constraints and triggers: db/README.md, "Invariants"). The ledger check is for the rows a
 * database upgraded from before 0002 may still hold (the constraints are validated after the
 * upgrade, and a violation leaves one NOT VALID with a warning) or that got in with checks turned
 * off: so the planting runs with them off, as on such a database. The returned function puts them
 * back, NOT VALID (the planted rows stay).
 */
async function turnOffDatabaseChecks(db: Database): Promise<() => Promise<void>> {
  const checks = (await db.execute(sql`
    select conname as name, pg_get_constraintdef(oid) as definition from pg_constraint
    where conrelid = 'charges.charges'::regclass and contype = 'c'
      and conname in ('charges_refunded_matches_status', 'charges_times_match_status')
  `)) as unknown as { rows: { name: string; definition: string }[] };
  expect(checks.rows).toHaveLength(2);
  for (const { name } of checks.rows) await db.execute(sql`alter table charges.charges drop constraint ${sql.identifier(name)}`);
  await db.execute(sql`alter table charges.charges disable trigger user`);
  await db.execute(sql`alter table charges.refunds disable trigger user`);
  return async () => {
    await db.execute(sql`alter table charges.charges enable trigger user`);
    await db.execute(sql`alter table charges.refunds enable trigger user`);
    for (const { name, definition } of checks.rows) {
      const check = definition.replace(/ NOT VALID$/, '');
      await db.execute(sql`alter table charges.charges add constraint ${sql.identifier(name)} ${sql.raw(check)} not valid`);
    }
  };
}

describe('checkLedger', () => {
  const fx = merchantDatabase();

  const deps = () => ({ db: fx.database.db, idempotencyWaitMs: 1_000 });

  it('passes on a ledger written by the service, and the CLI exits 0', async () => {
    const card = await fx.seed.card({ ownerId: fx.holderId, issuerId: fx.merchantId });
    await authorizeCharge(deps(), fx.principal(), { cardId: card.id, amount: 100, currency: 'USD' }, 'ledger-ok-1');
    await authorizeCharge(deps(), fx.principal(), { cardId: card.id, amount: 100, currency: 'USD' }, 'ledger-ok-2');
    expect(await checkLedger(fx.database)).toEqual([]);
    const { stdout } = await run(process.execPath, [cli], { env: { ...process.env, DATABASE_URL: fx.database.url }, timeout: 30_000 });
    expect(stdout).toContain('ok');
  });

  it('detects planted violations of every rule, and the CLI exits 1 naming them', async () => {
    const db = fx.database.db;
    const restoreChecks = await turnOffDatabaseChecks(db);
    // A charge inserted behind the service's back: no event, and its card is still ACTIVE.
    const activeCard = await fx.seed.card({ ownerId: fx.holderId, issuerId: fx.merchantId });
    const orphan = newId('ch');
    await db
      .insert(charges)
      .values({ id: orphan, cardId: activeCard.id, merchantId: fx.merchantId, amount: 100, currency: 'USD', status: 'AUTHORIZED' });

    // A refunded total with no refund rows behind it, and a status that disagrees.
    const card2 = await fx.seed.card({ ownerId: fx.holderId, issuerId: fx.merchantId });
    const { charge } = await authorizeCharge(deps(), fx.principal(), { cardId: card2.id, amount: 100, currency: 'USD' }, 'ledger-bad-1');
    await db.update(charges).set({ refundedAmount: 40 }).where(eq(charges.id, charge.id));

    // A refund above the amount (the check constraint has to go first).
    await db.execute(sql`alter table charges.charges drop constraint charges_refund_bounds`);
    const card3 = await fx.seed.card({ ownerId: fx.holderId, issuerId: fx.merchantId });
    const { charge: overRefunded } = await authorizeCharge(
      deps(),
      fx.principal(),
      { cardId: card3.id, amount: 100, currency: 'USD' },
      'ledger-bad-2',
    );
    await db.update(charges).set({ refundedAmount: 150, status: 'REFUNDED' }).where(eq(charges.id, overRefunded.id));

    // A second success on a used card (the partial unique index has to go first), and its event.
    await db.execute(sql`drop index charges.charges_one_success_per_card`);
    const second = newId('ch');
    await db
      .insert(charges)
      .values({ id: second, cardId: card2.id, merchantId: fx.merchantId, amount: 50, currency: 'USD', status: 'AUTHORIZED' });
    await db.insert(chargeEvents).values({ chargeId: second, status: 'SETTLED' });

    // One charge claimed by two idempotency keys.
    await db.insert(chargeIdempotencyKeys).values({
      principalId: fx.merchantId,
      operation: 'create_charge',
      key: 'ledger-bad-dup',
      fingerprint: 'x',
      state: 'completed',
      chargeId: charge.id,
    });
    await restoreChecks();

    const violations = await checkLedger(fx.database);
    const byRule = Object.fromEntries(violations.map((v) => [v.rule, [...v.ids].sort()]));
    expect(byRule).toEqual({
      one_success_per_card: [card2.id],
      refund_within_amount: [overRefunded.id],
      refunded_amount_matches_refunds: [charge.id, overRefunded.id].sort(),
      status_matches_refunds: [charge.id, overRefunded.id].sort(),
      charged_card_is_used: [orphan],
      // Inserted behind the service's back as AUTHORIZED without an authorization time.
      settlement_matches_status: [orphan, second].sort(),
      idempotency_key_unique: [charge.id],
      charge_has_event: [orphan],
      status_matches_last_event: [overRefunded.id, second].sort(),
    });

    const failed = await run(process.execPath, [cli], { env: { ...process.env, DATABASE_URL: fx.database.url }, timeout: 30_000 }).then(
      () => undefined,
      (error: { code: number; stdout: string }) => error,
    );
    expect(failed?.code).toBe(1);
    expect(failed?.stdout).toContain('one_success_per_card');
  });
});

describe('checkLedger: charges against their cards, and settlement state', () => {
  const fx = merchantDatabase();
  const deps = () => ({ db: fx.database.db, idempotencyWaitMs: 1_000 });
  const authorize = async (key: string, amount = 100) => {
    const card = await fx.seed.card({ ownerId: fx.holderId, issuerId: fx.merchantId, amount: 1_000, currency: 'USD' });
    const { charge } = await authorizeCharge(deps(), fx.principal(), { cardId: card.id, amount, currency: 'USD' }, key);
    return { card, charge };
  };

  it('passes on charges, declines, refunds and settlements written by the service', async () => {
    const { charge } = await authorize('state-ok-1');
    await authorize('state-ok-2', 1_000);
    const declinedCard = await fx.seed.card({ ownerId: fx.holderId, issuerId: fx.merchantId, status: 'CANCELED' });
    await authorizeCharge(deps(), fx.principal(), { cardId: declinedCard.id, amount: 5, currency: 'USD' }, 'state-ok-3');
    await refundCharge(deps(), fx.principal(), charge.id, 40, 'state-ok-refund');
    await settleAllDue(fx.database.db, { delayMs: 0, batchSize: 10 });
    expect(await checkLedger(fx.database)).toEqual([]);
  });

  it('detects a charge beyond its card, a card spent without a charge, and settlement timestamps that contradict the status', async () => {
    const db = fx.database.db;
    const restoreChecks = await turnOffDatabaseChecks(db);
    // More money than the card was funded with, and another currency than the card's.
    const { charge: overCard } = await authorize('state-bad-1');
    await db.update(charges).set({ amount: 1_001 }).where(eq(charges.id, overCard.id));
    const { charge: otherCurrency } = await authorize('state-bad-2');
    await db.update(charges).set({ currency: 'EUR' }).where(eq(charges.id, otherCurrency.id));
    // A card closed (USED) with no charge to show for it: a half-written authorization.
    const spent = await fx.seed.card({ ownerId: fx.holderId, issuerId: fx.merchantId });
    await db.update(cards).set({ status: 'USED', usedAt: new Date() }).where(eq(cards.id, spent.id));
    // SETTLED with no settlement time; AUTHORIZED yet settled; a settlement before the authorization.
    const { charge: settledNever } = await authorize('state-bad-3');
    await db.update(charges).set({ status: 'SETTLED' }).where(eq(charges.id, settledNever.id));
    await db.insert(chargeEvents).values({ chargeId: settledNever.id, status: 'SETTLED' });
    const { charge: authorizedSettled } = await authorize('state-bad-4');
    await db.update(charges).set({ settledAt: new Date() }).where(eq(charges.id, authorizedSettled.id));
    const { charge: settledEarly } = await authorize('state-bad-5');
    await settleAllDue(db, { delayMs: 0, batchSize: 10 });
    await db
      .update(charges)
      .set({ settledAt: new Date(settledEarly.createdAt.getTime() - 60_000) })
      .where(eq(charges.id, settledEarly.id));
    await restoreChecks();

    const violations = await checkLedger(fx.database);
    const byRule = Object.fromEntries(violations.map((v) => [v.rule, [...v.ids].sort()]));
    expect(byRule).toEqual({
      charge_within_card: [overCard.id, otherCurrency.id].sort(),
      used_card_has_charge: [spent.id],
      settlement_matches_status: [settledNever.id, authorizedSettled.id, settledEarly.id].sort(),
    });
  });
});

describe('the ledger-check CLI on the embedded database', () => {
  it('refuses, exit 2 with a plain message, a data directory another process (npm start) has open, instead of opening it too', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'ghostpay-ledger-cli-'));
    const held = await createDatabase({ dataDir: embeddedDatabaseDir(dataDir) });
    try {
      const env = { ...process.env, DATABASE_URL: '', GHOSTPAY_DATA_DIR: dataDir };
      const failed = await run(process.execPath, [cli], { env, timeout: 30_000 }).then(
        () => undefined,
        (error: { code: number; stdout: string; stderr: string }) => error,
      );
      expect(failed?.code).toBe(2);
      expect(failed?.stderr).toContain(`ledger check: ${embeddedDatabaseDir(dataDir)} is open in another process (${process.pid})`);
      expect(failed?.stderr).not.toMatch(/\n\s+at /);
      expect(failed?.stdout).toBe('');
    } finally {
      await held.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
