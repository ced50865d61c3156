// Calls against the REST bridge (openapi-bridge/openapi.yaml) and the router, shared by the scripts.
import { check, fail, sleep } from 'k6';
import http from 'k6/http';

const json = { 'Content-Type': 'application/json' };

/** Declines are answered 402 by design: a business outcome, not a failed request. */
export const expectedStatuses = http.expectedStatuses({ min: 200, max: 299 }, 402);

/**
 * The token exchange is anonymous, so the router counts it against the client address's limit
 * (ROUTER_ANONYMOUS_RATE_LIMIT_PER_MINUTE, 100 by default): a run with more keys than that
 * gets 429s in setup(). Each is waited out (its Retry-After) and the exchange retried, up to
 * `exchangeWaitSeconds` in all per key.
 */
export const exchangeWaitSeconds = 90;

function exchange(baseUrl, apiKey) {
  let res;
  for (let waited = 0; ; ) {
    res = http.post(`${baseUrl}/auth/token`, JSON.stringify({ api_key: apiKey }), {
      headers: json,
      tags: { name: 'POST /auth/token' },
      responseCallback: http.expectedStatuses(200, 429),
    });
    const retryAfter = Number(res.headers['Retry-After']);
    if (res.status !== 429 || !(retryAfter > 0) || waited + retryAfter > exchangeWaitSeconds) break;
    sleep(retryAfter);
    waited += retryAfter;
  }
  const ok = check(res, {
    'token: 200': (r) => r.status === 200,
    'token: has access_token': (r) => typeof r.json('access_token') === 'string',
  });
  if (!ok) fail(`token exchange failed: HTTP ${res.status} ${res.body}`);
  return { token: res.json('access_token'), expiresIn: Number(res.json('expires_in')) };
}

/** POST /auth/token {api_key} → access_token. Fails the iteration when the exchange fails. */
export function fetchToken(baseUrl, apiKey) {
  return exchange(baseUrl, apiKey).token;
}

/**
 * One token per API key for the whole run (the scripts exchange the keys once, in setup()).
 * Stops the run before any load when a token expires before the run ends (`runSeconds`: the
 * scenario's stages added up, plus the time setup() spent after that token was issued, waiting
 * out the anonymous rate limit): a token lives `expires_in` seconds (the auth service's
 * ACCESS_TOKEN_TTL_SECONDS, 900 by default), and past that every request would be a 401.
 */
export function fetchTokens(baseUrl, apiKeys, runSeconds) {
  const issued = apiKeys.map((apiKey) => ({ ...exchange(baseUrl, apiKey), at: Date.now() }));
  const setupEnds = Date.now();
  for (const { expiresIn, at } of issued) {
    const lasts = runSeconds + Math.ceil((setupEnds - at) / 1000);
    if (!(expiresIn > lasts)) {
      fail(
        `tokens expire after ${expiresIn} s but this run lasts ${lasts} s: shorten RAMP/HOLD, or raise the auth service's ACCESS_TOKEN_TTL_SECONDS`,
      );
    }
  }
  return issued.map(({ token }) => token);
}

/**
 * k6's setupTimeout for exchanging `keys` API keys: 60 s (k6's default) plus, for every 100 keys
 * past the first 100 (the anonymous limit per minute), one wait of up to a minute for it.
 */
export function setupTimeoutFor(keys) {
  return `${60 + Math.ceil(Math.max(0, keys - 100) / 100) * exchangeWaitSeconds}s`;
}

function authHeaders(token, extra = {}) {
  return { ...json, Authorization: `Bearer ${token}`, ...extra };
}

/** POST /cards {user_id, amount, currency} → {card_id, status, expires_at}. */
export function createCard(baseUrl, token, userId, amount, currency) {
  const res = http.post(`${baseUrl}/cards`, JSON.stringify({ user_id: userId, amount, currency }), {
    headers: authHeaders(token),
    tags: { name: 'POST /cards' },
  });
  check(res, {
    'card: 201': (r) => r.status === 201,
    'card: active': (r) => r.status === 201 && r.json('status') === 'active',
  });
  return res.status === 201 ? res.json('card_id') : undefined;
}

/** GET /cards/{id}. */
export function getCard(baseUrl, token, cardId) {
  const res = http.get(`${baseUrl}/cards/${cardId}`, { headers: authHeaders(token), tags: { name: 'GET /cards/{id}' } });
  check(res, { 'get card: 200': (r) => r.status === 200, 'get card: same id': (r) => r.status === 200 && r.json('card_id') === cardId });
  return res;
}

/** POST /charges {card_id, amount, currency} with an Idempotency-Key; 201 authorized or 402 declined. */
export function createCharge(baseUrl, token, cardId, amount, currency, idempotencyKey = crypto.randomUUID()) {
  const res = http.post(`${baseUrl}/charges`, JSON.stringify({ card_id: cardId, amount, currency }), {
    headers: authHeaders(token, { 'Idempotency-Key': idempotencyKey }),
    tags: { name: 'POST /charges' },
  });
  check(res, { 'charge: 201 or 402': (r) => r.status === 201 || r.status === 402 });
  return res;
}

/** POST {routerUrl} (e.g. https://api.example/graphql) with a GraphQL document. */
export function graphql(routerUrl, token, query, variables = {}, name = 'graphql') {
  const res = http.post(routerUrl, JSON.stringify({ query, variables }), {
    headers: authHeaders(token),
    tags: { name: `POST /graphql ${name}` },
  });
  check(res, {
    'graphql: 200': (r) => r.status === 200,
    'graphql: no errors': (r) => r.status === 200 && !r.json('errors'),
  });
  return res;
}
