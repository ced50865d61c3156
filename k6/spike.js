// Spike: traffic jumps from a trickle to SPIKE_RATE requests/s within seconds, holds, and
// drops back. The service must not fall over: few 5xx, bounded latency, and it recovers.
// 429s are the rate limiter doing its job and are counted apart (rate_limited), not as errors.
import { check } from 'k6';
import http from 'k6/http';
import { Rate } from 'k6/metrics';
import { durationEnv, intEnv, optionalEnv, requireEnv, urlEnv } from './lib/env.js';
import { fetchTokens, setupTimeoutFor } from './lib/ghostpay.js';

const baseUrl = urlEnv('BASE_URL');
const routerUrl = urlEnv('ROUTER_URL');
const apiKeys = requireEnv('API_KEYS')
  .split(',')
  .map((k) => k.trim())
  .filter(Boolean);
const userId = requireEnv('USER_ID');
const currency = optionalEnv('CURRENCY', 'USD');
const hold = durationEnv('HOLD', '1m');
// 30 s at 2/s, 10 s up to the peak, HOLD at the peak, 10 s back down: the recovery minute starts then.
const recoveryAfterSeconds = 30 + 10 + hold.seconds + 10;
const rateLimited = new Rate('rate_limited');
const serverErrors = new Rate('server_errors');

export const options = {
  // Exchanging more keys than the router's anonymous limit (100/min) waits it out in setup().
  setupTimeout: setupTimeoutFor(apiKeys.length),
  scenarios: {
    spike: {
      executor: 'ramping-arrival-rate',
      startRate: 2,
      timeUnit: '1s',
      preAllocatedVUs: intEnv('VUS', 100),
      maxVUs: intEnv('MAX_VUS', 500),
      stages: [
        { target: 2, duration: '30s' },
        { target: intEnv('SPIKE_RATE', 200), duration: '10s' },
        { target: intEnv('SPIKE_RATE', 200), duration: hold.text },
        { target: 2, duration: '10s' },
        { target: 2, duration: '1m' },
      ],
    },
  },
  thresholds: {
    server_errors: ['rate<0.01'],
    http_req_duration: ['p(99)<1000'],
    // After the spike (last minute at 2 req/s) latency is back within the SLO.
    'http_req_duration{phase:recovery}': ['p(95)<100'],
  },
};

export function setup() {
  return { tokens: fetchTokens(baseUrl, apiKeys, recoveryAfterSeconds + 60), started: Date.now() };
}

export default function ({ tokens, started }) {
  http.setResponseCallback(http.expectedStatuses({ min: 200, max: 299 }, 402, 429));
  const phase = Date.now() - started > recoveryAfterSeconds * 1000 ? 'recovery' : 'spike';
  const token = tokens[(__VU + __ITER) % tokens.length];
  const headers = { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` };
  const res =
    __ITER % 2 === 0
      ? http.post(`${baseUrl}/cards`, JSON.stringify({ user_id: userId, amount: 500, currency }), {
          headers,
          tags: { name: 'POST /cards', phase },
        })
      : http.post(routerUrl, JSON.stringify({ query: 'query SpikeCards { cards(first: 5) { edges { node { id } } } }' }), {
          headers,
          tags: { name: 'POST /graphql SpikeCards', phase },
        });
  rateLimited.add(res.status === 429);
  serverErrors.add(res.status >= 500 || res.status === 0);
  check(res, { 'not a server error': (r) => r.status > 0 && r.status < 500 });
}
