import { Counter, type Registry } from 'prom-client';

export interface ChargesMetrics {
  /** Created charges by outcome; decline_code is '' for successful authorizations. Replays are not counted. */
  chargesTotal: Counter<'status' | 'decline_code'>;
}

export function createChargesMetrics(registry: Registry): ChargesMetrics {
  return {
    chargesTotal: new Counter({
      name: 'charges_total',
      help: 'Charges created, by resulting status and decline code',
      labelNames: ['status', 'decline_code'] as const,
      registers: [registry],
    }),
  };
}
