// Rate limit: one API key sends LIMIT + EXTRA requests to the router within a minute. The
// first LIMIT are served; every later one is answered 429 with Retry-After and RateLimit
// headers. Run it with a fresh key (nothing else using it this minute).
import { check } from 'k6';
import http from 'k6/http';
import { Counter } from 'k6/metrics';
import { intEnv, requireEnv, urlEnv } from './lib/env.js';
import { fetchToken } from './lib/ghostpay.js';

const baseUrl = urlEnv('BASE_URL');
const routerUrl = urlEnv('ROUTER_URL');
const apiKey = requireEnv('API_KEY');
const limit = intEnv('LIMIT', 100);
const extra = intEnv('EXTRA', 20);
const servedOverLimit = new Counter('served_over_limit');
const limitedUnderLimit = new Counter('limited_under_limit');

export const options = {
  scenarios: {
    burst: { executor: 'per-vu-iterations', vus: 1, iterations: 1, maxDuration: '50s' },
  },
  thresholds: {
    checks: ['rate==1'],
    served_over_limit: ['count==0'],
    limited_under_limit: ['count==0'],
  },
};

export function setup() {
  return { token: fetchToken(baseUrl, apiKey) };
}

export default function ({ token }) {
  const headers = { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` };
  const body = JSON.stringify({ query: 'query RateLimitProbe { __typename }' });
  let firstLimited = 0;
  for (let i = 1; i <= limit + extra; i++) {
    const res = http.post(routerUrl, body, {
      headers,
      tags: { name: 'POST /graphql RateLimitProbe' },
      responseCallback: http.expectedStatuses(200, 429),
    });
    if (res.status === 429) {
      if (!firstLimited) firstLimited = i;
      if (i <= limit) limitedUnderLimit.add(1);
      check(res, {
        '429 has Retry-After': (r) => Number(r.headers['Retry-After']) > 0,
        '429 has RateLimit headers': (r) => Boolean(r.headers.Ratelimit || r.headers['Ratelimit-Limit'] || r.headers['Ratelimit-Policy']),
      });
    } else {
      if (i > limit) servedOverLimit.add(1);
      check(res, { 'served: 200': (r) => r.status === 200 });
    }
  }
  check(firstLimited, { [`first 429 is request ${limit + 1}`]: (n) => n === limit + 1 });
}
