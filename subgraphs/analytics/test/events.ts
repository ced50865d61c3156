import { randomBytes } from 'node:crypto';
import type { RequestEvent } from '@ghostpay/platform';

/** A small seeded PRNG so a failing run can be reproduced from its seed. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const operations: [string | null, RequestEvent['operationType']][] = [
  ['CreateCard', 'mutation'],
  ['ChargeCard', 'mutation'],
  ['GetCard', 'query'],
  [null, 'query'],
];
export const apiKeys = ['key_alpha', 'key_beta', 'key_gamma', null];

/** `count` events spread over `spanMs` from `start`, with skewed latencies, some errors and some overflow latencies. */
export function randomEvents(count: number, start: number, spanMs: number, seed = 42): RequestEvent[] {
  const random = seededRandom(seed);
  const pick = <T>(list: readonly T[]) => list[Math.floor(random() * list.length)]!;
  return Array.from({ length: count }, () => {
    const [operationName, operationType] = pick(operations);
    const roll = random();
    const httpStatus = roll < 0.05 ? 500 : roll < 0.1 ? 429 : 200;
    const errorCodes =
      httpStatus === 500 ? ['INTERNAL_SERVER_ERROR'] : httpStatus === 429 ? ['RATE_LIMITED'] : roll < 0.15 ? ['NOT_FOUND'] : [];
    const latencyMs = random() < 0.02 ? 10_000 + random() * 20_000 : Math.round(Math.exp(random() * 7) * 100) / 100;
    const apiKeyId = pick(apiKeys);
    return {
      eventId: randomBytes(8).toString('hex'),
      timestamp: new Date(start + Math.floor(random() * spanMs)).toISOString(),
      requestId: randomBytes(6).toString('hex'),
      traceId: randomBytes(16).toString('hex'),
      operationName,
      operationType,
      apiKeyId,
      userId: apiKeyId ? `usr_${apiKeyId.slice(4)}` : null,
      role: apiKeyId ? 'merchant' : null,
      httpStatus,
      errorCodes,
      latencyMs,
      subgraphTimings: [{ subgraph: 'cards', ms: latencyMs / 2 }],
    };
  });
}
