/**
 * An unexpected error of a subscription (the subscribe resolver's database read failing) reaches
 * the subscriber as INTERNAL_SERVER_ERROR, with nothing of the cause. Over HTTP the platform's
 * plugin logs such an error's cause for the operator; the WebSocket path logged nothing, so the
 * router's 'upstream subscription failed' warning (codes only) was all there was to go on. It is
 * logged now, and the client still gets only the closed-list code. Real PostgreSQL, real tokens.
 */
import { capturingLogger, createSeed, createTestTokenIssuer, freshDatabase } from '@ghostpay/test-support';
import { sql } from 'drizzle-orm';
import { createClient } from 'graphql-ws';
import { expect, it } from 'vitest';
import WebSocket from 'ws';
import { chargesConfigSchema, checkLedger, createChargesService } from '../src/index.ts';
import { type ChargeJson, createChargeMutation } from './charges-harness.ts';

it('logs the cause of an unexpected subscription error, and the subscriber gets only INTERNAL_SERVER_ERROR', async () => {
  const database = await freshDatabase();
  const captured = capturingLogger('charges');
  const tokens = await createTestTokenIssuer();
  const service = createChargesService({
    database,
    logger: captured.logger,
    verifier: tokens.verifier,
    config: chargesConfigSchema.parse({ LOG_LEVEL: 'info', SETTLEMENT_ENABLED: 'false' }),
  });
  const url = await service.start(0);
  let hidden = false;
  try {
    const seed = createSeed(database.db);
    const merchant = await seed.user('merchant');
    const holder = await seed.user('user');
    const card = await seed.card({ ownerId: holder.id, issuerId: merchant.id });
    const bearer = await tokens.bearer({ userId: merchant.id, role: 'merchant' });
    const response = await fetch(`${url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: bearer },
      body: JSON.stringify({
        query: createChargeMutation,
        variables: { input: { cardId: card.id, amount: 100, currency: 'USD' }, key: 'logged' },
      }),
    });
    const charge = ((await response.json()) as { data: { createCharge: ChargeJson } }).data.createCharge;

    // The charge is visible (its row is read first); the events its stream starts from are not.
    await database.db.execute(sql`alter table charges.charge_events rename to charge_events_hidden`);
    hidden = true;
    const authed = createClient({
      url: `${url.replace(/^http/, 'ws')}/graphql`,
      webSocketImpl: WebSocket,
      connectionParams: { authorization: bearer },
      retryAttempts: 0,
      lazy: true,
    });
    try {
      const errors = await new Promise<unknown[]>((resolve, reject) => {
        const got: unknown[] = [];
        authed.subscribe(
          { query: 'subscription ($id: ID!) { chargeUpdated(id: $id) { status } }', variables: { id: charge.id } },
          {
            next: (value) => got.push(...(value.errors ?? [])),
            error: (error) => (Array.isArray(error) ? resolve([...got, ...error]) : reject(error)),
            complete: () => resolve(got),
          },
        );
      });
      expect(errors).toEqual([
        { message: 'Internal server error', path: ['chargeUpdated'], extensions: { code: 'INTERNAL_SERVER_ERROR' } },
      ]);
    } finally {
      await authed.dispose();
    }
    const logged = captured
      .parsed<{ level: number; msg: string; err?: { message?: string } }>()
      .filter((line) => line.msg === 'unexpected error in a subscription');
    expect(logged).toHaveLength(1);
    expect(logged[0]?.level).toBe(50);
    expect(logged[0]?.err?.message).toMatch(/charge_events/);
  } finally {
    if (hidden) await database.db.execute(sql`alter table charges.charge_events_hidden rename to charge_events`);
    await service.close();
    expect(await checkLedger(database)).toEqual([]);
    await database.close();
  }
});
