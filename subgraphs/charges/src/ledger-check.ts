import type { DatabaseHandle } from '@ghostpay/db';
import { type SQL, sql } from 'drizzle-orm';

export interface LedgerViolation {
  /** Which invariant is broken, e.g. `one_success_per_card`. */
  rule: string;
  description: string;
  /** Offending ids (charge, card or key), at most 100 per rule. */
  ids: string[];
}

interface LedgerRule {
  rule: string;
  description: string;
  /** Returns one `id` column per offending row. */
  query: SQL;
}

const rules: LedgerRule[] = [
  {
    rule: 'one_success_per_card',
    description: 'a card has more than one non-declined charge',
    query: sql`select card_id as id from charges.charges where status <> 'DECLINED' group by card_id having count(*) > 1`,
  },
  {
    rule: 'refund_within_amount',
    description: 'refunded_amount is negative or above the charged amount',
    query: sql`select id from charges.charges where refunded_amount < 0 or refunded_amount > amount`,
  },
  {
    rule: 'refunded_amount_matches_refunds',
    description: 'refunded_amount differs from the sum of the refund rows',
    query: sql`select c.id from charges.charges c
      left join (select charge_id, sum(amount) as total from charges.refunds group by charge_id) r on r.charge_id = c.id
      where c.refunded_amount <> coalesce(r.total, 0)`,
  },
  {
    rule: 'status_matches_refunds',
    description: 'status disagrees with refunded_amount (REFUNDED = all, PARTIALLY_REFUNDED = some, others none)',
    query: sql`select id from charges.charges where
      (status = 'REFUNDED' and refunded_amount <> amount)
      or (status = 'PARTIALLY_REFUNDED' and not (refunded_amount > 0 and refunded_amount < amount))
      or (status in ('AUTHORIZED', 'SETTLED', 'DECLINED') and refunded_amount <> 0)`,
  },
  {
    rule: 'charged_card_is_used',
    description: "a non-declined charge's card is not USED",
    query: sql`select c.id from charges.charges c join cards.cards k on k.id = c.card_id
      where c.status <> 'DECLINED' and k.status <> 'USED'`,
  },
  {
    rule: 'charge_within_card',
    description: "a non-declined charge is above its card's amount or in another currency than the card's",
    query: sql`select c.id from charges.charges c join cards.cards k on k.id = c.card_id
      where c.status <> 'DECLINED' and (c.amount > k.amount or c.currency <> k.currency)`,
  },
  {
    rule: 'used_card_has_charge',
    description: 'a card is USED without a non-declined charge (closed with nothing charged)',
    query: sql`select k.id from cards.cards k where k.status = 'USED'
      and not exists (select 1 from charges.charges c where c.card_id = k.id and c.status <> 'DECLINED')`,
  },
  {
    rule: 'settlement_matches_status',
    description:
      'timestamps disagree with the status (SETTLED without settled_at, AUTHORIZED with one, a DECLINED charge authorized or settled, a non-declined one without authorized_at, settled before authorized)',
    query: sql`select id from charges.charges where
      (status = 'SETTLED' and settled_at is null)
      or (status = 'AUTHORIZED' and settled_at is not null)
      or (status = 'DECLINED' and (authorized_at is not null or settled_at is not null))
      or (status <> 'DECLINED' and authorized_at is null)
      or settled_at < authorized_at`,
  },
  {
    rule: 'idempotency_key_unique',
    description: 'an idempotency key has two rows, or one charge was created under two keys',
    query: sql`select principal_id || ':' || operation || ':' || key as id from charges.idempotency_keys
        group by principal_id, operation, key having count(*) > 1
      union all
      select charge_id as id from charges.idempotency_keys
        where operation = 'create_charge' and charge_id is not null group by charge_id having count(*) > 1`,
  },
  {
    rule: 'charge_has_event',
    description: 'a charge has no event row',
    query: sql`select c.id from charges.charges c where not exists (select 1 from charges.charge_events e where e.charge_id = c.id)`,
  },
  {
    rule: 'status_matches_last_event',
    description: "a charge's status differs from its latest event's status",
    query: sql`select c.id from charges.charges c
      join lateral (select e.status from charges.charge_events e where e.charge_id = c.id order by e.id desc limit 1) last on true
      where last.status <> c.status`,
  },
];

/**
 * Verifies the charges ledger's invariants on a database and returns every violation
 * (empty when the ledger is sound). Read-only; safe to run against production.
 */
export async function checkLedger(database: Pick<DatabaseHandle, 'db'>): Promise<LedgerViolation[]> {
  const violations: LedgerViolation[] = [];
  for (const { rule, description, query } of rules) {
    const result = (await database.db.execute(sql`select id from (${query}) offenders limit 100`)) as unknown as {
      rows: Array<{ id: string }>;
    };
    if (result.rows.length > 0) violations.push({ rule, description, ids: result.rows.map((row) => String(row.id)) });
  }
  return violations;
}
