// Calls against the REST bridge (openapi-bridge/openapi.yaml) and the router, shared by the scripts.
import { check, fail } from 'k6';
import http from 'k6/http';

const json = { 'Content-Type': 'application/json' };

/** Declines are answered 402 by design: a business outcome, not a failed request. */
export const expectedStatuses = http.expectedStatuses({ min: 200, max: 299 }, 402);

function exchange(baseUrl, apiKey) {
  const res = http.post(`${baseUrl}/auth/token`, JSON.stringify({ api_key: apiKey }), {
    headers: json,
    tags: { name: 'POST /auth/token' },
  });
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
 * scenario's stages added up): a token lives `expires_in` seconds (the auth service's
 * ACCESS_TOKEN_TTL_SECONDS, 900 by default), and past that every request would be a 401.
 */
export function fetchTokens(baseUrl, apiKeys, runSeconds) {
  return apiKeys.map((apiKey) => {
    const { token, expiresIn } = exchange(baseUrl, apiKey);
    if (!(expiresIn > runSeconds)) {
      fail(
        `tokens expire after ${expiresIn} s but this run lasts ${runSeconds} s: shorten RAMP/HOLD, or raise the auth service's ACCESS_TOKEN_TTL_SECONDS`,
      );
    }
    return token;
  });
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
