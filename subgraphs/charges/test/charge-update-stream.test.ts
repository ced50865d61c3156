import type { Database } from '@ghostpay/db';
import { createLogger } from '@ghostpay/platform';
import type { SeededUser } from '@ghostpay/test-support';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type ChargeEventBus, createChargeEventBus } from '../src/charge-event-bus.ts';
import type { ChargeRow } from '../src/charge-record.ts';
import { openChargeUpdateStream } from '../src/charge-update-stream.ts';
import { settleAllDue } from '../src/index.ts';
import { type ChargeJson, createChargeMutation, type Harness, refundChargeMutation, startHarness, until } from './charges-harness.ts';

/**
 * The database as it is, except that the first query built from it waits for `release()`
 * before it goes to PostgreSQL: a test can commit changes while a reader's first read is
 * in flight.
 */
function holdFirstQuery(db: Database) {
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  let started!: () => void;
  const firstQueryStarted = new Promise<void>((resolve) => (started = resolve));
  let held = false;
  const heldDb = new Proxy(db, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver);
      if (property !== 'select' || held) return value;
      return (...args: unknown[]) => {
        held = true;
        const builder = (value as (...a: unknown[]) => { from: (...a: unknown[]) => unknown }).apply(target, args);
        const from = builder.from.bind(builder);
        builder.from = (...fromArgs: unknown[]) => {
          const query = from(...fromArgs) as { execute: (...a: unknown[]) => Promise<unknown> };
          const execute = query.execute;
          query.execute = async (...values: unknown[]) => {
            started();
            await released;
            return execute(...values);
          };
          return query;
        };
        return builder;
      };
    },
  });
  return { db: heldDb, firstQueryStarted, release };
}

/** The bus, counting the notifications it hands to its listeners. */
function countingBus(bus: ChargeEventBus) {
  const counted = { notifications: 0 };
  const wrapped: ChargeEventBus = {
    get subscriberCount() {
      return bus.subscriberCount;
    },
    subscribe: (chargeId, listener) =>
      bus.subscribe(chargeId, () => {
        counted.notifications++;
        listener();
      }),
    close: () => bus.close(),
  };
  return { bus: wrapped, counted };
}

/** Reads from the stream until `last` matches, failing instead of hanging. */
async function readUntil(stream: AsyncIterableIterator<ChargeRow>, last: (row: ChargeRow) => boolean): Promise<ChargeRow[]> {
  const rows: ChargeRow[] = [];
  while (!rows.some(last)) {
    let timer: NodeJS.Timeout | undefined;
    const next = await Promise.race([
      stream.next(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no further event after ${JSON.stringify(rows.map(summary))}`)), 5_000);
      }),
    ]).finally(() => clearTimeout(timer));
    if (next.done) break;
    rows.push(next.value);
  }
  return rows;
}

const summary = (row: ChargeRow) => `${row.status}/${Number(row.refundedAmount)}`;

describe('openChargeUpdateStream', () => {
  let h: Harness;
  let merchant: SeededUser;
  let holder: SeededUser;
  let bearer: string;
  let bus: ChargeEventBus;

  beforeAll(async () => {
    h = await startHarness();
    merchant = await h.seed.user('merchant');
    holder = await h.seed.user('user');
    bearer = await h.tokens.bearer({ userId: merchant.id, role: 'merchant' });
    bus = createChargeEventBus(h.database, createLogger({ service: 'charges', level: 'silent' }));
  });
  afterEach(async () => h.expectLedgerClean());
  afterAll(async () => {
    await bus?.close();
    await h?.close();
  });

  it('starts at the latest event and repeats nothing when a change commits during its first read', async () => {
    const card = await h.seed.card({ ownerId: holder.id, issuerId: merchant.id, amount: 1_000 });
    const created = await h.gql<{ createCharge: ChargeJson }>(
      createChargeMutation,
      { input: { cardId: card.id, amount: 1_000, currency: 'USD' }, key: 'stream-1' },
      bearer,
    );
    const chargeId = created.data?.createCharge.id ?? '';
    await settleAllDue(h.database.db, { delayMs: 0, batchSize: 100 });

    const held = holdFirstQuery(h.database.db);
    const counting = countingBus(bus);
    const opening = openChargeUpdateStream(held.db, counting.bus, chargeId);
    await held.firstQueryStarted;
    // A real refund commits and its NOTIFY reaches the stream while the first read waits.
    const refunded = await h.gql(refundChargeMutation, { id: chargeId, amount: 400, key: 'stream-1-refund' }, bearer);
    expect(refunded.errors).toBeUndefined();
    await until(() => counting.counted.notifications === 1, 'the refund notification');
    held.release();
    const stream = await opening;
    try {
      const first = await readUntil(stream, (row) => Number(row.refundedAmount) === 400);
      expect(first.map(summary)).toEqual(['PARTIALLY_REFUNDED/400']);
      // Later changes still arrive, each once, in order.
      await h.gql(refundChargeMutation, { id: chargeId, amount: 100, key: 'stream-1-refund-2' }, bearer);
      const later = await readUntil(stream, (row) => Number(row.refundedAmount) === 500);
      expect(later.map(summary)).toEqual(['PARTIALLY_REFUNDED/500']);
    } finally {
      await stream.return?.();
    }
    expect(bus.subscriberCount).toBe(0);
  });
});
