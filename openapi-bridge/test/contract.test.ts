import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createContractChecker } from './contract-checker.ts';
import { type Stack, startStack } from './stack-harness.ts';

/**
 * Contract tests: every route of openapi.yaml, called on the running bridge in front of
 * the real router (safelist mode, trusting only the bridge's manifest) and the real auth,
 * cards and charges subgraphs. Every answer, success or error, is checked against the
 * contract's schema for its status (see contract-checker.ts).
 */
describe('the REST contract on the running stack', () => {
  let stack: Stack;
  let api: ReturnType<typeof createContractChecker>;
  let merchant: { userId: string; apiKey: string; apiKeyId: string; token: string };
  let holder: { userId: string; apiKey: string; token: string };
  let card: { card_id: string };
  let charge: { charge_id: string };

  beforeAll(async () => {
    stack = await startStack();
    api = createContractChecker(stack.bridgeUrl);
    const m = await stack.seed('merchant');
    const h = await stack.seed('user');
    const tokenOf = async (apiKey: string) => {
      const response = await api.call('POST', '/auth/token', { body: { api_key: apiKey } });
      expect(response.status).toBe(200);
      return response.body.access_token as string;
    };
    merchant = { ...m, token: await tokenOf(m.apiKey) };
    holder = { ...h, token: await tokenOf(h.apiKey) };
  }, 120_000);

  afterAll(async () => {
    await stack?.close();
  });

  describe('POST /auth/token', () => {
    it('exchanges an API key for a bearer token', async () => {
      const response = await api.call('POST', '/auth/token', { body: { api_key: merchant.apiKey } });
      expect(response.status).toBe(200);
      expect(response.body).toMatchObject({ token_type: 'Bearer', expires_in: expect.any(Number) });
    });

    it('exchanges an API key even when the client still sends its expired or invalid bearer token', async () => {
      const response = await api.call('POST', '/auth/token', {
        token: 'eyJhbGciOiJSUzI1NiJ9.e30.x',
        body: { api_key: merchant.apiKey },
      });
      expect(response.status).toBe(200);
      expect(response.body.token_type).toBe('Bearer');
    });

    it('refuses an unknown API key with 401', async () => {
      const response = await api.call('POST', '/auth/token', { body: { api_key: `${merchant.apiKey.slice(0, -4)}zzzz` } });
      expect(response.status).toBe(401);
      expect(response.body.error.code).toBe('UNAUTHENTICATED');
    });

    it('lists each bad field of the body in a 400', async () => {
      const response = await api.call('POST', '/auth/token', { body: { apiKey: 'x', extra: 1 } });
      expect(response.status).toBe(400);
      expect(response.body.error.fields.map((f: { field: string }) => f.field).sort()).toEqual(['apiKey', 'api_key', 'extra']);
    });
  });

  describe('POST /cards', () => {
    it('issues a card with the seed contract: 201, card_id, status active, expires_at', async () => {
      const response = await api.call('POST', '/cards', {
        token: merchant.token,
        body: { user_id: holder.userId, amount: 5000, currency: 'USD' },
      });
      expect(response.status).toBe(201);
      expect(response.body).toMatchObject({ status: 'active', amount: 5000, currency: 'USD', user_id: holder.userId });
      expect(response.body.card_id).toMatch(/^card_/);
      expect(Date.parse(response.body.expires_at)).toBeGreaterThan(Date.now());
      card = response.body;
    });

    it('replays the same card for the same Idempotency-Key and body', async () => {
      const key = randomUUID();
      const body = { user_id: holder.userId, amount: 700, currency: 'EUR' };
      const first = await api.call('POST', '/cards', { token: merchant.token, body, headers: { 'Idempotency-Key': key } });
      const again = await api.call('POST', '/cards', { token: merchant.token, body, headers: { 'Idempotency-Key': key } });
      expect(first.status).toBe(201);
      expect(again.status).toBe(201);
      expect(again.body.card_id).toBe(first.body.card_id);
    });

    it('answers 422 when an Idempotency-Key is reused with another body', async () => {
      const key = randomUUID();
      await api.call('POST', '/cards', {
        token: merchant.token,
        body: { user_id: holder.userId, amount: 100, currency: 'USD' },
        headers: { 'Idempotency-Key': key },
      });
      const reused = await api.call('POST', '/cards', {
        token: merchant.token,
        body: { user_id: holder.userId, amount: 200, currency: 'USD' },
        headers: { 'Idempotency-Key': key },
      });
      expect(reused.status).toBe(422);
      expect(reused.body.error.code).toBe('IDEMPOTENCY_KEY_REUSED');
    });

    it('lists every bad field before calling the router', async () => {
      const response = await api.call('POST', '/cards', {
        token: merchant.token,
        body: { user_id: holder.userId, amount: -5, currency: 'usd', color: 'red' },
      });
      expect(response.status).toBe(400);
      expect(response.body.error.fields.map((f: { field: string }) => f.field).sort()).toEqual(['amount', 'color', 'currency']);
    });

    it('passes the service’s own input checks through as 400 with REST field names', async () => {
      const response = await api.call('POST', '/cards', {
        token: merchant.token,
        body: { user_id: holder.userId, amount: 100, currency: 'ZZZ' },
      });
      expect(response.status).toBe(400);
      expect(response.body.error.code).toBe('BAD_USER_INPUT');
      // The cards service named it `input.currency`: the client reads the body's own name.
      const fields = [{ field: 'currency', message: 'must be an active ISO 4217 currency code (e.g. USD)' }];
      expect(response.body.error.fields).toEqual(fields);
      expect(response.body.error.message).toBe(`currency: ${fields[0]!.message}`);
    });

    it('answers 401 without a token and with a forged one', async () => {
      const none = await api.call('POST', '/cards', { body: { user_id: holder.userId, amount: 100, currency: 'USD' } });
      expect(none.status).toBe(401);
      expect(none.headers.get('www-authenticate')).toBe('Bearer');
      const forged = await api.call('POST', '/cards', {
        token: 'eyJhbGciOiJub25lIn0.e30.x',
        body: { user_id: holder.userId, amount: 100, currency: 'USD' },
      });
      expect(forged.status).toBe(401);
      expect(forged.body.error.code).toBe('UNAUTHENTICATED');
    });

    it('answers 403 to a cardholder without the cards:write scope', async () => {
      const response = await api.call('POST', '/cards', {
        token: holder.token,
        body: { user_id: holder.userId, amount: 100, currency: 'USD' },
      });
      expect(response.status).toBe(403);
      expect(response.body.error.code).toBe('FORBIDDEN');
    });
  });

  describe('card reads', () => {
    it('reads a card by id', async () => {
      const response = await api.call('GET', `/cards/${card.card_id}`, { token: merchant.token });
      expect(response.status).toBe(200);
      expect(response.body.card_id).toBe(card.card_id);
    });

    it('answers 404 for a card that does not exist', async () => {
      const response = await api.call('GET', '/cards/card_0000000000000000000000', { token: merchant.token });
      expect(response.status).toBe(404);
      expect(response.body.error.code).toBe('NOT_FOUND');
    });

    it('lists cards with filters and cursor pagination', async () => {
      const first = await api.call('GET', `/cards?status=active&user_id=${holder.userId}&limit=1`, { token: merchant.token });
      expect(first.status).toBe(200);
      expect(first.body.data).toHaveLength(1);
      expect(first.body.has_more).toBe(true);
      const second = await api.call(
        'GET',
        `/cards?status=active&user_id=${holder.userId}&limit=1&cursor=${encodeURIComponent(first.body.next_cursor)}`,
        {
          token: merchant.token,
        },
      );
      expect(second.status).toBe(200);
      expect(second.body.data[0].card_id).not.toBe(first.body.data[0].card_id);
    });

    it('refuses bad and unknown query parameters with 400', async () => {
      const response = await api.call('GET', '/cards?limit=0&status=shiny&sort=asc', { token: merchant.token });
      expect(response.status).toBe(400);
      expect(response.body.error.fields.map((f: { field: string }) => f.field).sort()).toEqual(['limit', 'sort', 'status']);
    });

    it('reveals the PAN and CVC to the card owner, never cached', async () => {
      const response = await api.call('POST', `/cards/${card.card_id}/reveal`, { token: holder.token });
      expect(response.status).toBe(200);
      expect(response.body.pan).toMatch(/^\d{12,19}$/);
      expect(response.body.pan.slice(-4)).toBe((card as unknown as { last4: string }).last4);
      expect(response.headers.get('cache-control')).toBe('no-store');
    });

    it('refuses a reveal to the issuing merchant', async () => {
      const response = await api.call('POST', `/cards/${card.card_id}/reveal`, { token: merchant.token });
      expect([403, 404]).toContain(response.status);
    });
  });

  describe('POST /charges', () => {
    it('answers 400 without an Idempotency-Key', async () => {
      const response = await api.call('POST', '/charges', {
        token: merchant.token,
        body: { card_id: card.card_id, amount: 1000, currency: 'USD' },
      });
      expect(response.status).toBe(400);
      expect(response.body.error.code).toBe('BAD_USER_INPUT');
      expect(response.body.error.message).toBe('Idempotency-Key: is required');
      expect(response.body.error.fields).toEqual([{ field: 'Idempotency-Key', message: 'is required' }]);
    });

    it('authorizes a charge: 201 with status authorized', async () => {
      const key = randomUUID();
      const body = { card_id: card.card_id, amount: 1000, currency: 'USD', description: 'order 1' };
      const response = await api.call('POST', '/charges', { token: merchant.token, body, headers: { 'Idempotency-Key': key } });
      expect(response.status).toBe(201);
      expect(response.body).toMatchObject({
        status: 'authorized',
        card_id: card.card_id,
        amount: 1000,
        currency: 'USD',
        decline_code: null,
      });
      charge = response.body;
      const replay = await api.call('POST', '/charges', { token: merchant.token, body, headers: { 'Idempotency-Key': key } });
      expect(replay.status).toBe(201);
      expect(replay.body.charge_id).toBe(charge.charge_id);
    });

    it('answers 409 while the request holding the key is in flight, with the charges service’s retryAfter as Retry-After', async () => {
      const key = randomUUID();
      const pool = stack.database.pool;
      if (!pool) throw new Error('needs PostgreSQL');
      // The original: another request's transaction holding the key, still open.
      const inFlight = await pool.connect();
      let response: Awaited<ReturnType<typeof api.call>>;
      try {
        await inFlight.query('begin');
        await inFlight.query(
          `insert into charges.idempotency_keys (principal_id, key, operation, fingerprint, state) values ($1, $2, 'create_charge', 'f', 'in_progress')`,
          [merchant.userId, key],
        );
        response = await api.call('POST', '/charges', {
          token: merchant.token,
          body: { card_id: card.card_id, amount: 10, currency: 'USD' },
          headers: { 'Idempotency-Key': key },
        });
      } finally {
        await inFlight.query('rollback');
        inFlight.release();
      }
      expect(response.status).toBe(409);
      expect(response.body.error.code).toBe('IDEMPOTENCY_KEY_IN_USE');
      // Every service at its defaults: charges gives up waiting for the key (IDEMPOTENCY_WAIT_MS, 2 s)
      // before the router gives up on charges (5 s, which would be a 503), and its hint, the wait
      // in whole seconds, comes through the router as Retry-After: not the bridge's guess of 1.
      expect(response.headers.get('retry-after')).toBe('2');
    });

    it('takes a description of 500 characters counted as the contract counts them (code points: an emoji is one)', async () => {
      const issued = await api.call('POST', '/cards', {
        token: merchant.token,
        body: { user_id: holder.userId, amount: 100, currency: 'USD' },
      });
      expect(issued.status).toBe(201);
      const description = '\u{1F600}'.repeat(500);
      const response = await api.call('POST', '/charges', {
        token: merchant.token,
        body: { card_id: issued.body.card_id, amount: 100, currency: 'USD', description },
        headers: { 'Idempotency-Key': randomUUID() },
      });
      expect(response.status).toBe(201);
      expect(response.body.description).toBe(description);
    });

    it('declines a second charge on a used card with 402 and the recorded charge', async () => {
      const response = await api.call('POST', '/charges', {
        token: merchant.token,
        body: { card_id: card.card_id, amount: 10, currency: 'USD' },
        headers: { 'Idempotency-Key': randomUUID() },
      });
      expect(response.status).toBe(402);
      expect(response.body).toMatchObject({ status: 'declined', decline_code: 'card_already_used', error: { code: 'CARD_DECLINED' } });
      expect(response.body.charge_id).toMatch(/^ch_/);
    });
  });

  describe('charge reads and refunds', () => {
    it('reads a charge by id', async () => {
      const response = await api.call('GET', `/charges/${charge.charge_id}`, { token: merchant.token });
      expect(response.status).toBe(200);
      expect(response.body.charge_id).toBe(charge.charge_id);
    });

    it('answers 404 for a charge that does not exist', async () => {
      const response = await api.call('GET', '/charges/ch_0000000000000000000000', { token: merchant.token });
      expect(response.status).toBe(404);
    });

    it('lists the charges of a card', async () => {
      const response = await api.call('GET', `/charges?card_id=${card.card_id}&limit=10`, { token: merchant.token });
      expect(response.status).toBe(200);
      expect(response.body.data.map((c: { status: string }) => c.status).sort()).toEqual(['authorized', 'declined']);
    });

    it('refunds part of a charge', async () => {
      const response = await api.call('POST', `/charges/${charge.charge_id}/refunds`, {
        token: merchant.token,
        body: { amount: 300 },
        headers: { 'Idempotency-Key': randomUUID() },
      });
      expect(response.status).toBe(200);
      expect(response.body).toMatchObject({ status: 'partially_refunded', refunded_amount: 300 });
    });

    it('replays a refund for the same Idempotency-Key and amount, and refuses the key with another amount (422)', async () => {
      const key = randomUUID();
      const refund = (amount: number) =>
        api.call('POST', `/charges/${charge.charge_id}/refunds`, {
          token: merchant.token,
          body: { amount },
          headers: { 'Idempotency-Key': key },
        });
      const first = await refund(100);
      expect(first.status).toBe(200);
      expect(first.body).toMatchObject({ status: 'partially_refunded', refunded_amount: 400 });
      const replay = await refund(100);
      expect(replay.status).toBe(200);
      expect(replay.body).toEqual(first.body);
      const reused = await refund(200);
      expect(reused.status).toBe(422);
      expect(reused.body.error.code).toBe('IDEMPOTENCY_KEY_REUSED');
      // Refunded once: the replay and the refused reuse moved no money.
      const read = await api.call('GET', `/charges/${charge.charge_id}`, { token: merchant.token });
      expect(read.body.refunded_amount).toBe(400);
    });

    it('answers 400 to a refund without an Idempotency-Key, as POST /charges does, and refunds nothing', async () => {
      for (const body of [{ amount: 50 }, undefined]) {
        const response = await api.call('POST', `/charges/${charge.charge_id}/refunds`, {
          token: merchant.token,
          ...(body ? { body } : {}),
        });
        expect(response.status).toBe(400);
        expect(response.body.error.code).toBe('BAD_USER_INPUT');
        expect(response.body.error.message).toBe('Idempotency-Key: is required');
        expect(response.body.error.fields).toEqual([{ field: 'Idempotency-Key', message: 'is required' }]);
      }
      // No money moved: a client that retries after a timeout cannot refund twice without a key.
      const read = await api.call('GET', `/charges/${charge.charge_id}`, { token: merchant.token });
      expect(read.body).toMatchObject({ status: 'partially_refunded', refunded_amount: 400 });
    });

    it('refunds the rest without a body', async () => {
      const response = await api.call('POST', `/charges/${charge.charge_id}/refunds`, {
        token: merchant.token,
        headers: { 'Idempotency-Key': randomUUID() },
      });
      expect(response.status).toBe(200);
      expect(response.body).toMatchObject({ status: 'refunded', refunded_amount: 1000 });
    });
  });

  describe('POST /cards/{card_id}/cancel', () => {
    it('cancels an active card', async () => {
      const issued = await api.call('POST', '/cards', {
        token: merchant.token,
        body: { user_id: holder.userId, amount: 100, currency: 'USD' },
      });
      const response = await api.call('POST', `/cards/${issued.body.card_id}/cancel`, { token: merchant.token });
      expect(response.status).toBe(200);
      expect(response.body.status).toBe('canceled');
      expect(response.body.canceled_at).not.toBeNull();
    });
  });

  describe('transport errors', () => {
    it('answers 400 for malformed JSON', async () => {
      const response = await api.call('POST', '/cards', { token: merchant.token, rawBody: '{"user_id":' });
      expect(response.status).toBe(400);
      expect(response.body.error.message).toMatch(/not valid JSON/);
    });

    it('answers 413 for an oversized body', async () => {
      const response = await api.call('POST', '/cards', { token: merchant.token, body: { user_id: 'x'.repeat(64 * 1024) } });
      expect(response.status).toBe(413);
      expect(response.body.error.code).toBe('PAYLOAD_TOO_LARGE');
      expect(response.headers.get('connection')).toBe('close');
    });

    it('answers an unknown route with the 404 envelope', async () => {
      const response = await fetch(`${stack.bridgeUrl}/wallets`);
      expect(response.status).toBe(404);
      expect(((await response.json()) as { error: unknown }).error).toMatchObject({ code: 'NOT_FOUND', request_id: expect.any(String) });
    });

    it('answers a known path with a wrong method with 405 and Allow', async () => {
      const response = await fetch(`${stack.bridgeUrl}/cards/x`, { method: 'DELETE' });
      expect(response.status).toBe(405);
      expect(response.headers.get('allow')).toBe('GET');
      expect(response.headers.get('cache-control')).toBe('no-store');
      expect(((await response.json()) as { error: unknown }).error).toMatchObject({ code: 'BAD_USER_INPUT' });
    });

    it('carries the caller’s request id into the envelope', async () => {
      const response = await api.call('GET', '/cards/card_0000000000000000000000', {
        token: merchant.token,
        headers: { 'X-Request-Id': 'req-42' },
      });
      expect(response.body.error.request_id).toBe('req-42');
      expect(response.headers.get('x-request-id')).toBe('req-42');
    });
  });

  describe('meta routes', () => {
    it('serves the contract, the docs page, health and readiness', async () => {
      const spec = await api.call('GET', '/openapi.json');
      expect(spec.status).toBe(200);
      expect(spec.body.openapi).toBe('3.1.0');
      const docs = await api.call('GET', '/docs');
      expect(docs.status).toBe(200);
      expect(docs.headers.get('content-security-policy')).toContain("script-src 'self'");
      for (const asset of ['swagger-ui.css', 'swagger-ui-bundle.js', 'swagger-ui-standalone-preset.js', 'docs-init.js']) {
        expect((await api.call('GET', `/docs/${asset}`)).status).toBe(200);
      }
      expect((await api.call('GET', '/docs/nope.js')).status).toBe(404);
      expect((await api.call('GET', '/healthz')).status).toBe(200);
      expect((await api.call('GET', '/readyz')).body).toMatchObject({ status: 'ready', checks: { router: 'up' } });
      expect((await api.call('GET', '/metrics')).body).toContain('http_request_duration_seconds');
    });

    it('labels metrics with route templates, never ids', async () => {
      const metrics = await (await fetch(`${stack.bridgeUrl}/metrics`)).text();
      expect(metrics).toContain('route="/cards/{card_id}"');
      expect(metrics).not.toContain(card.card_id);
    });
  });

  describe('rate limits (run late: they spend a key’s budget)', () => {
    it('answers 429 with Retry-After and the RateLimit fields passed through', async () => {
      const limited = await stack.seed('merchant');
      const token = (await api.call('POST', '/auth/token', { body: { api_key: limited.apiKey } })).body.access_token;
      stack.rateLimits.set(limited.apiKeyId, 2);
      const statuses: number[] = [];
      let last: Awaited<ReturnType<typeof api.call>> | undefined;
      for (let i = 0; i < 3; i++) {
        last = await api.call('GET', '/cards?limit=1', { token });
        statuses.push(last.status);
      }
      expect(statuses).toEqual([200, 200, 429]);
      expect(last?.body.error.code).toBe('RATE_LIMITED');
      expect(Number(last?.headers.get('retry-after'))).toBeGreaterThan(0);
      expect(last?.headers.get('ratelimit')).toBeTruthy();
      expect(last?.headers.get('ratelimit-policy')).toBeTruthy();
    });
  });

  describe('outages (run last)', () => {
    it('answers 503 SUBGRAPH_UNAVAILABLE when the charges subgraph is down', async () => {
      await stack.charges.close();
      const response = await api.call('GET', `/charges/${charge.charge_id}`, { token: merchant.token });
      expect(response.status).toBe(503);
      expect(response.body.error.code).toBe('SUBGRAPH_UNAVAILABLE');
      expect(response.body.error.message).not.toMatch(/subgraph|charges|ECONN/i);
    });

    it('answers 503 and reports not ready when the router is down', async () => {
      await stack.router.close();
      const response = await api.call('GET', `/cards/${card.card_id}`, { token: merchant.token });
      expect(response.status).toBe(503);
      expect(response.body.error.code).toBe('SERVICE_UNAVAILABLE');
      const ready = await api.call('GET', '/readyz');
      expect(ready.status).toBe(503);
    });

    it('called every API route of the contract', () => {
      const called = new Set([...api.seen].map((key) => key.split(' ').slice(0, 2).join(' ')));
      const documented = api.routes.map((route) => `${route.method} ${route.pathTemplate}`);
      expect(documented.filter((route) => !called.has(route))).toEqual([]);
    });
  });
});
