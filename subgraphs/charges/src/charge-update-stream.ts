import { chargeEvents, type Database } from '@ghostpay/db';
import { and, asc, desc, eq, gt } from 'drizzle-orm';
import type { ChargeEventBus } from './charge-event-bus.ts';
import { type ChargeRow, type ChargeSnapshot, fromSnapshot } from './charge-record.ts';

/**
 * The charge as of its latest event, then as of each later event, in commit order.
 *
 * It subscribes to the bus before reading the latest event, so nothing committed in
 * between is lost. Every read, the first included, is one link of a single chain: a
 * notification that arrives while the first read runs queues its read behind it, which
 * then asks only for events after the one the first read delivered. So reads never run at
 * once, the last delivered event id only grows, and no event is delivered twice. Each
 * notification re-reads the events after the last one delivered, so a missed or coalesced
 * NOTIFY costs nothing. `return()` (client unsubscribe, socket close) ends it at once, even
 * while it is waiting.
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

  /** Queues `read` behind every read before it; a failure ends the stream on the next `next()`. */
  const enqueue = (read: () => Promise<void>) => {
    fetching = fetching.then(async () => {
      if (done) return;
      try {
        await read();
      } catch (error) {
        failure = error;
      }
      wake?.();
    });
  };
  const deliver = (row: { id: number; data: unknown }) => {
    // The chain already guarantees it; a stream that moved backwards would repeat events.
    if (row.id <= lastEventId) return;
    lastEventId = row.id;
    queue.push(fromSnapshot(row.data as ChargeSnapshot));
  };
  const fetchNew = () =>
    enqueue(async () => {
      const rows = await db
        .select({ id: chargeEvents.id, data: chargeEvents.data })
        .from(chargeEvents)
        .where(and(eq(chargeEvents.chargeId, chargeId), gt(chargeEvents.id, lastEventId)))
        .orderBy(asc(chargeEvents.id))
        .limit(100);
      for (const row of rows) deliver({ id: Number(row.id), data: row.data });
      if (rows.length === 100) fetchNew();
    });

  // The first read is the chain's first link, held until LISTEN is active: a notification
  // during the subscribe or the read queues its fetch behind it.
  let subscribed!: () => void;
  fetching = new Promise<void>((resolve) => (subscribed = resolve));
  enqueue(async () => {
    const [latest] = await db
      .select({ id: chargeEvents.id, data: chargeEvents.data })
      .from(chargeEvents)
      .where(eq(chargeEvents.chargeId, chargeId))
      .orderBy(desc(chargeEvents.id))
      .limit(1);
    if (latest) deliver({ id: Number(latest.id), data: latest.data });
  });
  const firstRead = fetching;

  let unsubscribe: () => void;
  try {
    unsubscribe = await bus.subscribe(chargeId, fetchNew);
  } catch (error) {
    done = true;
    subscribed();
    throw error;
  }
  subscribed();
  await firstRead;
  if (failure) {
    done = true;
    unsubscribe();
    throw failure;
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
