import { Counter, Gauge, type Registry } from 'prom-client';

export interface ChargesMetrics {
  /** Created charges by outcome; decline_code is '' for successful authorizations. Replays are not counted. */
  chargesTotal: Counter<'status' | 'decline_code'>;
  /** Due charges not settled, as of this replica's last settlement pass (every replica reads the same table: take the max). */
  settlementDue: Gauge;
  /** How long the oldest due charge had waited past its settlement delay at that pass, in seconds. */
  settlementOldestDueSeconds: Gauge;
  /** Charges this process found it cannot settle and passes over until it restarts. */
  settlementPassedOver: Gauge;
}

export function createChargesMetrics(registry: Registry): ChargesMetrics {
  return {
    chargesTotal: new Counter({
      name: 'charges_total',
      help: 'Charges created, by resulting status and decline code',
      labelNames: ['status', 'decline_code'] as const,
      registers: [registry],
    }),
    settlementDue: new Gauge({
      name: 'charges_settlement_due',
      help: "Charges due for settlement and not settled, after this replica's last settlement pass",
      registers: [registry],
    }),
    settlementOldestDueSeconds: new Gauge({
      name: 'charges_settlement_oldest_due_seconds',
      help: "How long the oldest due charge had waited past its settlement delay, after this replica's last settlement pass",
      registers: [registry],
    }),
    settlementPassedOver: new Gauge({
      name: 'charges_settlement_passed_over',
      help: 'Charges this process cannot settle (refused by the database) and passes over until it restarts',
      registers: [registry],
    }),
  };
}
