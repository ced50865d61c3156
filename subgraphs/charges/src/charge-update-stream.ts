import { chargeEvents, type Database } from '@ghostpay/db';
import { and, asc, desc, eq, gt } from 'drizzle-orm';
import type { ChargeEventBus } from './charge-event-bus.ts';
import { type ChargeRow, type ChargeSnapshot, fromSnapshot } from './charge-record.ts';

/**
 * The charge as of its latest event, then as of each later event, in commit order.
 *
 * It subscribes to the bus before reading the latest event, so nothing committed in
 * between is lost; each notification re-reads the events after the last one delivered, so
 * a missed or coalesced NOTIFY costs nothing. `return()` (client unsubscribe, socket close)
 * ends it at once, even while it is waiting.
 */
export async function openChargeUpdateStream(
  db: Database,
  bus: ChargeEventBus,
  chargeId: string,
): Promise<AsyncIterableIterator<ChargeRow>> {
  const queue: ChargeRow[] = [];
  let lastEventId = 0;
  let done = false;
  let wake: (() => void) | undefined;
  let fetching: Promise<void> = Promise.resolve();
  let failure: unknown;

  const fetchNew = () => {
    fetching = fetching.then(async () => {
      if (done) return;
      try {
        const rows = await db
          .select({ id: chargeEvents.id, data: chargeEvents.data })
          .from(chargeEvents)
          .where(and(eq(chargeEvents.chargeId, chargeId), gt(chargeEvents.id, lastEventId)))
          .orderBy(asc(chargeEvents.id))
          .limit(100);
        for (const row of rows) {
          lastEventId = Number(row.id);
          queue.push(fromSnapshot(row.data as ChargeSnapshot));
        }
        if (rows.length === 100) fetchNew();
      } catch (error) {
        failure = error;
      }
      wake?.();
    });
  };

  const unsubscribe = await bus.subscribe(chargeId, fetchNew);
  try {
    const [latest] = await db
      .select({ id: chargeEvents.id, data: chargeEvents.data })
      .from(chargeEvents)
      .where(eq(chargeEvents.chargeId, chargeId))
      .orderBy(desc(chargeEvents.id))
      .limit(1);
    if (latest) {
      lastEventId = Number(latest.id);
      queue.push(fromSnapshot(latest.data as ChargeSnapshot));
    }
    // Events committed between the subscription and the read above were skipped by
    // lastEventId; anything after is fetched on its notification.
  } catch (error) {
    unsubscribe();
    throw error;
  }

  const finish = (): IteratorResult<ChargeRow> => {
    done = true;
    unsubscribe();
    wake?.();
    return { done: true, value: undefined };
  };

  const iterator: AsyncIterableIterator<ChargeRow> = {
    async next() {
      while (!done) {
        const next = queue.shift();
        if (next) return { done: false, value: next };
        if (failure) {
          const error = failure;
          finish();
          throw error;
        }
        await new Promise<void>((resolve) => (wake = resolve));
        wake = undefined;
      }
      return { done: true, value: undefined };
    },
    async return() {
      return finish();
    },
    async throw(error?: unknown) {
      finish();
      throw error;
    },
    [Symbol.asyncIterator]() {
      return iterator;
    },
  };
  return iterator;
}
