import { chargeEvents, type Transaction } from '@ghostpay/db';
import { sql } from 'drizzle-orm';
import { type ChargeRow, toSnapshot } from './charge-record.ts';

/** The NOTIFY channel every status change is announced on. */
export const chargeEventsChannel = 'charge_events';

/** NOTIFY payload: ids and status only, never card data. */
export interface ChargeEventNotice {
  chargeId: string;
  status: ChargeRow['status'];
  eventId: number;
}

/**
 * Records a status change: an event row holding the charge as of the change, and a NOTIFY.
 * Call inside the transaction that made the change: Postgres delivers the NOTIFY only
 * when (and if) that transaction commits.
 */
export async function recordChargeEvent(tx: Transaction, charge: ChargeRow): Promise<number> {
  const [event] = await tx
    .insert(chargeEvents)
    .values({ chargeId: charge.id, status: charge.status, data: toSnapshot(charge) })
    .returning({ id: chargeEvents.id });
  if (!event) throw new Error('charge event insert returned nothing');
  const eventId = Number(event.id);
  const notice: ChargeEventNotice = { chargeId: charge.id, status: charge.status, eventId };
  await tx.execute(sql`select pg_notify(${chargeEventsChannel}, ${JSON.stringify(notice)})`);
  return eventId;
}
