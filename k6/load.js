// Load: a steady arrival rate of merchant traffic (issue, read, charge) through the bridge and
// the router, held to the SLOs: p95 < 100 ms and < 1% errors.
// The router allows 100 requests/minute per API key: give enough keys (API_KEYS, comma
// separated) for the rate, about RATE * 60 * 4 / 100 of them, or every extra request is a 429.

import http from 'k6/http';
import { durationEnv, intEnv, optionalEnv, requireEnv, urlEnv } from './lib/env.js';
import { createCard, createCharge, expectedStatuses, fetchTokens, getCard, graphql, setupTimeoutFor } from './lib/ghostpay.js';

const baseUrl = urlEnv('BASE_URL');
const routerUrl = urlEnv('ROUTER_URL');
const apiKeys = requireEnv('API_KEYS')
  .split(',')
  .map((k) => k.trim())
  .filter(Boolean);
const userId = requireEnv('USER_ID');
const currency = optionalEnv('CURRENCY', 'USD');
const ramp = durationEnv('RAMP', '1m');
const hold = durationEnv('HOLD', '5m');
// The last stage ramps down for 30 s.
const rampDownSeconds = 30;

export const options = {
  // Exchanging more keys than the router's anonymous limit (100/min) waits it out in setup().
  setupTimeout: setupTimeoutFor(apiKeys.length),
  scenarios: {
    merchants: {
      executor: 'ramping-arrival-rate',
      startRate: 1,
      timeUnit: '1s',
      preAllocatedVUs: intEnv('VUS', 50),
      maxVUs: intEnv('MAX_VUS', 200),
      stages: [
        { target: intEnv('RATE', 20), duration: ramp.text },
        { target: intEnv('RATE', 20), duration: hold.text },
        { target: 0, duration: `${rampDownSeconds}s` },
      ],
    },
  },
  thresholds: {
    http_req_duration: ['p(95)<100'],
    'http_req_duration{name:POST /charges}': ['p(95)<100'],
    http_req_failed: ['rate<0.01'],
    checks: ['rate>0.99'],
  },
};

export function setup() {
  return { tokens: fetchTokens(baseUrl, apiKeys, ramp.seconds + hold.seconds + rampDownSeconds) };
}

export default function ({ tokens }) {
  http.setResponseCallback(expectedStatuses);
  // Each iteration is 4 requests under one key, spread over every key.
  const token = tokens[(__VU * 7919 + __ITER) % tokens.length];
  const cardId = createCard(baseUrl, token, userId, 2500, currency);
  if (!cardId) return;
  getCard(baseUrl, token, cardId);
  createCharge(baseUrl, token, cardId, 2500, currency);
  graphql(routerUrl, token, 'query LoadCard($id: ID!) { card(id: $id) { id status charges { id status } } }', { id: cardId }, 'LoadCard');
}
