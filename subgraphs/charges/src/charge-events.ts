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
 * The NOTIFY of one freshly inserted event, as a select-list item over a relation named
 * `event` that has the event row's `id`, `charge_id` and `status` (the RETURNING of an
 * insert into charge_events). Its payload is a {@link ChargeEventNotice}.
 */
export const notifyEvent = sql`pg_notify(${chargeEventsChannel}, json_build_object('chargeId', event.charge_id, 'status', event.status, 'eventId', event.id)::text)`;

/**
 * Records status changes: per charge an event row holding the charge as of the change, and
 * a NOTIFY, all in ONE statement whatever the number of charges. Call inside the
 * transaction that made the changes: Postgres delivers the NOTIFYs only when (and if) that
 * transaction commits. Returns the event ids in the order of `rows` (one change per charge).
 *
 * Each event is stamped (`created_at`) with its row's `updatedAt`, the moment of the change it
 * records: a refund's or settlement's clock reading once its rows were locked. The column's
 * default, `now()`, is the transaction's start, before any lock wait: an event would look older
 * than its own state change, and older than a change it came after.
 */
export async function recordChargeEvents(tx: Transaction, rows: readonly ChargeRow[]): Promise<number[]> {
  if (rows.length === 0) return [];
  const events = rows.map((row) => ({ charge_id: row.id, status: row.status, data: toSnapshot(row), at: row.updatedAt.toISOString() }));
  const result = (await tx.execute(sql`
    with event as (
      insert into ${chargeEvents} (charge_id, status, data, created_at)
      select charge_id, status, data, at
      from jsonb_to_recordset(${JSON.stringify(events)}::jsonb) as input(charge_id text, status text, data jsonb, at timestamptz)
      returning id, charge_id, status
    )
    select event.id, event.charge_id, ${notifyEvent} from event
  `)) as unknown as { rows: Array<{ id: number | string; charge_id: string }> };
  const idByCharge = new Map(result.rows.map((row) => [row.charge_id, Number(row.id)]));
  return rows.map((row) => {
    const id = idByCharge.get(row.id);
    if (id === undefined) throw new Error(`charge event insert returned nothing for ${row.id}`);
    return id;
  });
}

/** Records one status change; see {@link recordChargeEvents}. */
export async function recordChargeEvent(tx: Transaction, charge: ChargeRow): Promise<number> {
  const [eventId] = await recordChargeEvents(tx, [charge]);
  return eventId as number;
}
