// Smoke: one virtual user walks the main flow once per iteration through the REST bridge and
// the router. Used by deploy.yml against the idle colour before it takes traffic.
//   k6 run -e BASE_URL=https://bridge.example -e ROUTER_URL=https://api.example/graphql \
//          -e API_KEY=gp_... -e USER_ID=usr_... k6/smoke.js
import { check } from 'k6';
import http from 'k6/http';
import { intEnv, optionalEnv, requireEnv, urlEnv } from './lib/env.js';
import { createCard, createCharge, expectedStatuses, fetchToken, getCard, graphql } from './lib/ghostpay.js';

const baseUrl = urlEnv('BASE_URL');
const routerUrl = urlEnv('ROUTER_URL');
const apiKey = requireEnv('API_KEY');
const userId = requireEnv('USER_ID');
const currency = optionalEnv('CURRENCY', 'USD');

export const options = {
  vus: 1,
  iterations: intEnv('ITERATIONS', 3),
  thresholds: {
    checks: ['rate==1'],
    http_req_failed: ['rate==0'],
    http_req_duration: ['p(95)<500'],
  },
};

export function setup() {
  http.setResponseCallback(expectedStatuses);
  for (const path of ['/healthz', '/readyz']) {
    const res = http.get(`${baseUrl}${path}`, { tags: { name: `GET ${path}` } });
    check(res, { [`bridge ${path}: 200`]: (r) => r.status === 200 });
  }
  return { token: fetchToken(baseUrl, apiKey) };
}

export default function ({ token }) {
  http.setResponseCallback(expectedStatuses);
  const cardId = createCard(baseUrl, token, userId, 1500, currency);
  if (!cardId) return;
  getCard(baseUrl, token, cardId);

  const key = crypto.randomUUID();
  const first = createCharge(baseUrl, token, cardId, 1500, currency, key);
  check(first, { 'first charge authorized': (r) => r.status === 201 });
  // Same key, same body: replayed, not charged twice.
  const replay = createCharge(baseUrl, token, cardId, 1500, currency, key);
  check(replay, { 'retry replays the charge': (r) => r.status === first.status && r.json('charge_id') === first.json('charge_id') });
  // Single use: a second charge with a new key is declined (402), never a second authorization.
  const second = createCharge(baseUrl, token, cardId, 100, currency);
  check(second, { 'second charge declined': (r) => r.status === 402 });

  graphql(routerUrl, token, 'query SmokeCard($id: ID!) { card(id: $id) { id status } }', { id: cardId }, 'SmokeCard');
}
