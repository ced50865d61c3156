import type { IncomingMessage } from 'node:http';
import { connect } from 'node:net';
import { ErrorCode } from '@ghostpay/platform';
import { capturingLogger, type LoopbackServer, rawHttpRequest, startLoopbackServer } from '@ghostpay/test-support';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { type Bridge, bridgeConfigSchema, createBridge, loadSpec, manifestPath, mapGraphQLErrors, routesOf } from '../src/index.ts';
import { loadManifest } from '../src/persisted-query-manifest.ts';
import { createContractChecker } from './contract-checker.ts';
import { silentLogger } from './stack-harness.ts';

interface Captured {
  headers: IncomingMessage['headers'];
  body: Record<string, unknown>;
}

/**
 * A recording HTTP server in the router's place, answering what each test scripts. It lets
 * these tests pin what the bridge sends (hash only, forwarded headers) and how it maps the
 * answers the real stack cannot be made to give on demand (409, a stale manifest, a proxy's 502).
 */
describe('the bridge in front of a scripted router', () => {
  let fakeRouter: LoopbackServer;
  let bridge: Bridge;
  let api: ReturnType<typeof createContractChecker>;
  let bridgeUrl = '';
  const captured: Captured[] = [];
  /** What the scripted router answers; `drop` closes the connection without an answer, as a timeout after the write would. */
  let answer: { status: number; headers?: Record<string, string>; body: string; drop?: boolean } = { status: 200, body: '{}' };
  const manifest = loadManifest(manifestPath);
  const token = 'header.payload.signature';
  const traceparent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';

  beforeAll(async () => {
    fakeRouter = await startLoopbackServer((req, res, body) => {
      captured.push({ headers: req.headers, body: JSON.parse(body || '{}') });
      if (answer.drop) {
        req.socket.destroy();
        return;
      }
      res.writeHead(answer.status, { 'content-type': 'application/json', ...answer.headers });
      res.end(answer.body);
    });
    bridge = createBridge({
      config: bridgeConfigSchema.parse({
        LOG_LEVEL: 'silent',
        SHUTDOWN_TIMEOUT_MS: '200',
        ROUTER_URL: `${fakeRouter.url}/graphql`,
        BRIDGE_CORS_ORIGINS: 'https://shop.example.com',
      }),
      logger: silentLogger,
    });
    bridgeUrl = await bridge.start(0);
    api = createContractChecker(bridgeUrl);
  });

  afterAll(async () => {
    await bridge?.close();
    await fakeRouter?.close();
  });

  beforeEach(() => {
    captured.length = 0;
  });

  const errorAnswer = (code: string, extensions: Record<string, unknown> = {}, status = 200) => {
    answer = {
      status,
      body: JSON.stringify({ data: null, errors: [{ message: `failed: ${code}`, extensions: { code, ...extensions } }] }),
    };
  };

  it('sends only the operation’s hash, never its text, with mapped variables', async () => {
    answer = {
      status: 200,
      body: JSON.stringify({ data: { charge: null }, errors: [{ message: 'Charge not found', extensions: { code: 'NOT_FOUND' } }] }),
    };
    await api.call('GET', '/charges/ch_123', {
      token,
      headers: { cookie: 'session=1', 'x-internal': 'yes', traceparent, 'x-forwarded-for': '6.6.6.6' },
    });
    expect(captured).toHaveLength(1);
    const sent = captured[0] as Captured;
    expect(sent.body).toEqual({
      operationName: 'GetCharge',
      variables: { id: 'ch_123' },
      extensions: { persistedQuery: { version: 1, sha256Hash: manifest.get('GetCharge')?.id } },
    });
    expect(sent.headers.authorization).toBe(`Bearer ${token}`);
    expect(sent.headers.traceparent).toBe(traceparent);
    expect(sent.headers['x-request-id']).toBeTruthy();
    expect(sent.headers.cookie).toBeUndefined();
    expect(sent.headers['x-internal']).toBeUndefined();
    expect(sent.headers['x-forwarded-for']).toBe('127.0.0.1');
  });

  it('states the client address behind BRIDGE_TRUSTED_PROXY_HOPS proxies, never the forged entries left of it', async () => {
    const behindIngress = createBridge({
      config: bridgeConfigSchema.parse({ LOG_LEVEL: 'silent', ROUTER_URL: `${fakeRouter.url}/graphql`, BRIDGE_TRUSTED_PROXY_HOPS: '1' }),
      logger: silentLogger,
    });
    const url = await behindIngress.start(0);
    try {
      errorAnswer('NOT_FOUND');
      const sentFor = async (forwardedFor?: string) => {
        captured.length = 0;
        await fetch(`${url}/charges/ch_1`, {
          headers: { authorization: `Bearer ${token}`, ...(forwardedFor ? { 'x-forwarded-for': forwardedFor } : {}) },
        });
        return captured[0]?.headers['x-forwarded-for'];
      };
      // The ingress appends the address it saw: the rightmost entry is the client.
      expect(await sentFor('6.6.6.6, 203.0.113.7')).toBe('203.0.113.7');
      expect(await sentFor('198.51.100.9')).toBe('198.51.100.9');
      // No header (called directly): the socket peer.
      expect(await sentFor()).toBe('127.0.0.1');
    } finally {
      await behindIngress.close();
    }
  });

  it('forwards a well-formed traceparent, and beside it only a bounded, well-formed tracestate (tracing off)', async () => {
    errorAnswer('NOT_FOUND');
    const forwarded = async (headers: Record<string, string>) => {
      captured.length = 0;
      await api.call('GET', '/cards/card_1', { token, headers });
      const sent = captured[0]?.headers ?? {};
      return { traceparent: sent.traceparent, tracestate: sent.tracestate };
    };
    const members = (n: number) => Array.from({ length: n }, (_, i) => `v${i}=x`).join(',');
    expect(await forwarded({ traceparent, tracestate: 'congo=t61rcWkgMzE, rojo@acme=00f067aa0ba902b7' })).toEqual({
      traceparent,
      tracestate: 'congo=t61rcWkgMzE,rojo@acme=00f067aa0ba902b7',
    });
    expect(await forwarded({ traceparent, tracestate: members(32) })).toEqual({ traceparent, tracestate: members(32) });
    // Too many members, too long, malformed, a duplicate key: the traceparent still goes, the tracestate does not.
    for (const tracestate of [
      members(33),
      `a=${'x'.repeat(4096)}`,
      `k=${'x'.repeat(250)},l=${'y'.repeat(250)},m=${'z'.repeat(20)}`,
      'no-equals',
      'a=1,a=2',
      'A=1',
    ]) {
      expect(await forwarded({ traceparent, tracestate })).toEqual({ traceparent, tracestate: undefined });
    }
    // Not W3C: nothing goes, not even the tracestate.
    for (const bad of [
      '00-abc-def-01',
      `${traceparent}, ${traceparent}`,
      `00-${'0'.repeat(32)}-b7ad6b7169203331-01`,
      '00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01',
      'ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
      '00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01',
      `${traceparent}-extra`,
    ]) {
      expect(await forwarded({ traceparent: bad, tracestate: 'congo=t61rcWkgMzE' })).toEqual({
        traceparent: undefined,
        tracestate: undefined,
      });
    }
    // Flag bits W3C does not define are sent as zero; the sampled bit is kept.
    expect((await forwarded({ traceparent: traceparent.replace(/-01$/, '-ff') })).traceparent).toBe(traceparent.replace(/-01$/, '-03'));
  });

  it('forwards Authorization only on routes that require a token', async () => {
    answer = {
      status: 200,
      body: JSON.stringify({
        data: { createToken: { accessToken: 'fresh.token.x', tokenType: 'Bearer', expiresIn: 900, scope: 'cards:read' } },
      }),
    };
    // A client renewing its expired token still sends the old one; the router must not see it.
    const response = await api.call('POST', '/auth/token', { token: 'expired.token.x', body: { api_key: 'gp_some_key' } });
    expect(response.status).toBe(200);
    expect(captured).toHaveLength(1);
    expect(captured[0]?.headers.authorization).toBeUndefined();
  });

  it('refuses every documented operation that requires a token, called without one or with another scheme, before the router', async () => {
    // Walks the contract, so a route added later is held to it too.
    const guarded = routesOf(loadSpec()).filter((route) => route.graphqlOperation && route.requiresAuth);
    expect(guarded.map((route) => route.operationId).sort()).toEqual(
      ['cancelCard', 'createCharge', 'getCard', 'getCharge', 'issueCard', 'listCards', 'listCharges', 'refundCharge', 'revealCard'].sort(),
    );
    for (const route of guarded) {
      const path = route.pathTemplate.replace(/\{[^}]+\}/g, 'id_1');
      for (const authorization of [undefined, 'Basic dXNlcjpwYXNz', 'Bearer', `Token ${token}`]) {
        const response = await api.call(route.method, path, {
          headers: { 'Idempotency-Key': 'k-anon', ...(authorization ? { authorization } : {}) },
          ...(route.method === 'POST' ? { body: {} } : {}),
        });
        expect(response.status, `${route.method} ${path} ${authorization}`).toBe(401);
        expect(response.body.error.code).toBe('UNAUTHENTICATED');
      }
    }
    expect(captured).toEqual([]);
  });

  it('refuses a request that repeats Authorization, Idempotency-Key or Content-Type instead of reading one of them', async () => {
    const body = '{"card_id":"card_1","amount":1,"currency":"USD"}';
    // Raw, since fetch joins repeated fields into one; the socket stays open until the answer
    // (a half-closed one may be dropped while the bridge waits for the router).
    const send = (requestLine: string, headers: string[], text = '') =>
      new Promise<string>((resolve, reject) => {
        const socket = connect(Number(new URL(bridgeUrl).port), '127.0.0.1', () =>
          socket.write(
            `${requestLine} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n${headers.map((h) => `${h}\r\n`).join('')}` +
              `${text ? `Content-Length: ${Buffer.byteLength(text)}\r\n` : ''}\r\n${text}`,
          ),
        );
        let received = '';
        socket.on('data', (chunk) => {
          received += chunk;
        });
        socket.on('end', () => resolve(received));
        socket.on('error', reject);
      });
    const json = 'Content-Type: application/json';
    const key = 'Idempotency-Key: k-1';
    const cases: [string, string[], string, string][] = [
      // Node would forward the first token and drop the second without a word.
      ['POST /charges', [json, 'Authorization: Bearer a.b.c', 'Authorization: Bearer d.e.f', key], body, 'Authorization'],
      ['GET /cards/card_1', [`Authorization: Bearer ${token}`, `authorization: Bearer ${token}`], '', 'Authorization'],
      ['POST /charges', [json, `Authorization: Bearer ${token}`, key, 'Idempotency-Key: k-2'], body, 'Idempotency-Key'],
      ['POST /charges', [json, 'content-type: text/plain', `Authorization: Bearer ${token}`, key], body, 'Content-Type'],
    ];
    for (const [requestLine, headers, text, field] of cases) {
      const raw = await send(requestLine, headers, text);
      expect(raw, `${requestLine} ${field}`).toMatch(/^HTTP\/1\.1 400/);
      const answer = JSON.parse(raw.slice(raw.indexOf('\r\n\r\n') + 4));
      expect(answer.error).toMatchObject({
        code: 'BAD_USER_INPUT',
        message: `${field}: must be given once`,
        fields: [{ field, message: 'must be given once' }],
      });
    }
    expect(captured).toEqual([]);
    // POST /auth/token reads no Authorization (it forwards none): a repeated one is not its concern.
    errorAnswer('UNAUTHENTICATED');
    const token2 = await send('POST /auth/token', [json, 'Authorization: Bearer a', 'Authorization: Bearer b'], '{"api_key":"k"}');
    expect(token2).toMatch(/^HTTP\/1\.1 401/);
    expect(captured).toHaveLength(1);
  });

  it('maps REST bodies, queries and headers to the GraphQL variables', async () => {
    errorAnswer('NOT_FOUND');
    await api.call('POST', '/charges', {
      token,
      body: { card_id: 'card_1', amount: 250, currency: 'JPY' },
      headers: { 'Idempotency-Key': 'key-1' },
    });
    await api.call('GET', '/charges?status=partially_refunded&card_id=card_1&limit=5&cursor=abc', { token });
    await api.call('POST', '/cards', { token, body: { user_id: 'usr_1', amount: 10, currency: 'USD', expires_in_seconds: 60 } });
    await api.call('POST', '/charges/ch_1/refunds', { token, body: { amount: 300 }, headers: { 'Idempotency-Key': 'refund-1' } });
    await api.call('POST', '/charges/ch_1/refunds', { token, headers: { 'Idempotency-Key': 'refund-2' } });
    expect(captured.map((c) => c.body.variables)).toEqual([
      { input: { cardId: 'card_1', amount: 250, currency: 'JPY' }, idempotencyKey: 'key-1' },
      { filter: { status: 'PARTIALLY_REFUNDED', cardId: 'card_1' }, first: 5, after: 'abc' },
      { input: { userId: 'usr_1', amount: 10, currency: 'USD', expiresInSeconds: 60 } },
      // The client's Idempotency-Key is the refund's key, so a retry replays it.
      { id: 'ch_1', amount: 300, idempotencyKey: 'refund-1' },
      { id: 'ch_1', idempotencyKey: 'refund-2' },
    ]);
  });

  it('refuses a refund without an Idempotency-Key with the same 400 as a charge without one, and sends nothing', async () => {
    errorAnswer('NOT_FOUND');
    const charge = await api.call('POST', '/charges', { token, body: { card_id: 'card_1', amount: 250, currency: 'USD' } });
    expect(charge.status).toBe(400);
    for (const body of [{ amount: 300 }, undefined]) {
      const refund = await api.call('POST', '/charges/ch_1/refunds', { token, ...(body ? { body } : {}) });
      expect(refund.status).toBe(charge.status);
      expect(refund.headers.get('cache-control')).toBe('no-store');
      expect({ ...refund.body.error, request_id: undefined }).toEqual({ ...charge.body.error, request_id: undefined });
      expect(refund.body.error).toMatchObject({
        code: 'BAD_USER_INPUT',
        message: 'Idempotency-Key: is required',
        fields: [{ field: 'Idempotency-Key', message: 'is required' }],
      });
    }
    // A key the bridge made up would make every retry a new refund: no request reaches the router.
    expect(captured).toHaveLength(0);
  });

  it('sends nothing to the router for a request the contract refuses', async () => {
    const response = await api.call('POST', '/charges', { token, body: { card_id: 'card_1', amount: 1.5, currency: 'USD' } });
    expect(response.status).toBe(400);
    expect(response.body.error.fields.map((f: { field: string }) => f.field).sort()).toEqual(['Idempotency-Key', 'amount']);
    expect(captured).toHaveLength(0);
  });

  it('refuses an amount written with a fraction or an exponent, even one that parses to an integer', async () => {
    // `1.0000000000000001` parses to 1 and `10.00` to 10: JSON Schema's `integer` takes both, and
    // a client that meant $10.00 would be charged 10 cents. They are refused as `1.5` is.
    const charge = (amount: string) =>
      api.call('POST', '/charges', {
        token,
        rawBody: `{"card_id":"card_1","amount":${amount},"currency":"USD"}`,
        headers: { 'Idempotency-Key': `k-${amount}` },
      });
    for (const amount of ['1.0000000000000001', '10.00', '1e2', '1E+2', '2147483646.9999999']) {
      const response = await charge(amount);
      expect(response.status, amount).toBe(400);
      expect(response.body.error, amount).toMatchObject({
        code: 'BAD_USER_INPUT',
        message: 'amount: must be integer',
        fields: [{ field: 'amount', message: 'must be integer' }],
      });
    }
    const issue = await api.call('POST', '/cards', {
      token,
      rawBody: '{"user_id":"usr_1","amount":500,"currency":"USD","expires_in_seconds":3.6e3}',
    });
    expect(issue.body.error.fields).toEqual([{ field: 'expires_in_seconds', message: 'must be integer' }]);
    const refund = await api.call('POST', '/charges/ch_1/refunds', {
      token,
      rawBody: '{"amount":5.0}',
      headers: { 'Idempotency-Key': 'r' },
    });
    expect(refund.body.error.fields).toEqual([{ field: 'amount', message: 'must be integer' }]);
    expect(captured).toHaveLength(0);

    // Integers are sent as written, and a fraction inside a string field is only text.
    errorAnswer('NOT_FOUND');
    await api.call('POST', '/charges', {
      token,
      rawBody: '{"card_id":"card_1","amount":1000,"currency":"USD","description":"1.5e3 of 2.0"}',
      headers: { 'Idempotency-Key': 'k-ok' },
    });
    expect(captured.map((c) => c.body.variables)).toEqual([
      { input: { cardId: 'card_1', amount: 1000, currency: 'USD', description: '1.5e3 of 2.0' }, idempotencyKey: 'k-ok' },
    ]);
  });

  it('refuses a body on an operation that takes none (cancel, reveal), and accepts nothing or {}', async () => {
    const pan = '4111111111111111';
    for (const path of ['/cards/card_1/cancel', '/cards/card_1/reveal']) {
      for (const rawBody of [JSON.stringify({ pan }), '[]', 'null', '"x"']) {
        const response = await api.call('POST', path, { token, rawBody });
        expect(response.status, `${path} ${rawBody}`).toBe(400);
        expect(response.body.error).toMatchObject({
          code: 'BAD_USER_INPUT',
          fields: [{ field: 'body', message: 'This operation takes no request body' }],
        });
        expect(JSON.stringify(response.body)).not.toContain(pan);
      }
      const text = await api.call('POST', path, { token, rawBody: 'hello', headers: { 'content-type': 'text/plain' } });
      expect(text.status).toBe(400);
      const tooLarge = await api.call('POST', path, { token, body: { x: 'y'.repeat(20_000) } });
      expect(tooLarge.status).toBe(413);
    }
    expect(captured).toHaveLength(0);

    errorAnswer('NOT_FOUND');
    expect((await api.call('POST', '/cards/card_1/cancel', { token })).status).toBe(404);
    expect((await api.call('POST', '/cards/card_1/cancel', { token, body: {} })).status).toBe(404);
    expect((await api.call('POST', '/cards/card_1/reveal', { token, rawBody: ' { } ' })).status).toBe(404);
    expect(captured.map((c) => c.body.variables)).toEqual([{ id: 'card_1' }, { id: 'card_1' }, { id: 'card_1' }]);
  });

  it('refuses a body in a media type other than JSON with 415 and what it reads, as the router does', async () => {
    const body = JSON.stringify({ card_id: 'card_1', amount: 100, currency: 'USD' });
    for (const contentType of ['text/plain', 'application/x-www-form-urlencoded', 'application/jsonx']) {
      const response = await api.call('POST', '/charges', {
        token,
        rawBody: body,
        headers: { 'idempotency-key': 'k-media', 'content-type': contentType },
      });
      expect(response.status, contentType).toBe(415);
      expect(response.body, contentType).toEqual({
        error: {
          code: 'BAD_USER_INPUT',
          message: 'Content-Type must be application/json',
          request_id: response.headers.get('x-request-id'),
        },
      });
      expect(response.headers.get('accept'), contentType).toBe('application/json; charset=utf-8');
    }
    // No Content-Type at all (fetch sends none for bytes).
    const bare = await fetch(`${bridgeUrl}/charges`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'idempotency-key': 'k-media' },
      body: Buffer.from(body),
    });
    expect(bare.status).toBe(415);
    expect(await bare.json()).toMatchObject({ error: { code: 'BAD_USER_INPUT', message: 'Content-Type must be application/json' } });
    expect(captured).toHaveLength(0);
  });

  it('refuses a body declared in another charset than UTF-8 (415, as the router does), or whose bytes are not UTF-8 (400)', async () => {
    const body = JSON.stringify({ card_id: 'card_1', amount: 100, currency: 'USD' });
    for (const contentType of [
      'application/json; charset=utf-16',
      'application/json; charset="latin1"',
      'application/json;charset=ISO-8859-1',
    ]) {
      const response = await api.call('POST', '/charges', { token, rawBody: body, headers: { 'content-type': contentType } });
      expect(response.status, contentType).toBe(415);
      expect(response.body, contentType).toEqual({
        error: { code: 'BAD_USER_INPUT', message: 'Content-Type charset must be utf-8', request_id: response.headers.get('x-request-id') },
      });
      expect(response.headers.get('accept'), contentType).toBe('application/json; charset=utf-8');
      expect(response.headers.get('cache-control'), contentType).toBe('no-store');
    }
    // Every POST documents it (the checker refuses an undocumented status), those that take no body too.
    for (const [path, rawBody] of [
      ['/auth/token', '{"api_key":"k"}'],
      ['/cards', '{"user_id":"u","amount":100,"currency":"USD"}'],
      ['/cards/card_1/cancel', '{}'],
      ['/cards/card_1/reveal', '{}'],
      ['/charges/ch_1/refunds', '{}'],
    ] as const) {
      const response = await api.call('POST', path, {
        token,
        rawBody,
        headers: { 'content-type': 'application/json; charset=iso-8859-1', 'idempotency-key': 'k-charset' },
      });
      expect(response.status, path).toBe(415);
    }
    // A description holding a Latin-1 é (0xE9), not the UTF-8 bytes of one.
    const latin1 = Buffer.concat([
      Buffer.from('{"card_id":"card_1","amount":100,"currency":"USD","description":"caf'),
      Buffer.from([0xe9]),
      Buffer.from('"}'),
    ]);
    const response = await fetch(`${bridgeUrl}/charges`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}`, 'idempotency-key': 'k-latin1' },
      body: latin1,
    });
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ error: { code: 'BAD_USER_INPUT', message: 'The request body is not valid UTF-8' } });
    expect(captured).toHaveLength(0);
    // UTF-8, declared or not, is read.
    errorAnswer('NOT_FOUND');
    for (const contentType of ['application/json; charset=utf-8', 'application/json; charset=UTF8', 'application/json']) {
      const ok = await api.call('POST', '/charges', {
        token,
        rawBody: body,
        headers: { 'content-type': contentType, 'idempotency-key': 'k-utf8' },
      });
      expect(ok.status, contentType).toBe(404);
    }
  });

  it('refuses a body that repeats a key instead of keeping the last value', async () => {
    const response = await api.call('POST', '/charges', {
      token,
      rawBody: '{"card_id":"card_1","amount":1,"currency":"USD","amount":99999999}',
      headers: { 'Idempotency-Key': 'k' },
    });
    expect(response.status).toBe(400);
    expect(response.body.error).toMatchObject({
      code: 'BAD_USER_INPUT',
      message: 'amount: appears more than once',
      fields: [{ field: 'amount', message: 'appears more than once' }],
    });
    // The same key spelled with an escape is the same key.
    const escaped = await api.call('POST', '/auth/token', { rawBody: '{"api_key":"a","api\\u005fkey":"b"}' });
    expect(escaped.body.error.fields).toEqual([{ field: 'api_key', message: 'appears more than once' }]);
    expect(captured).toHaveLength(0);
  });

  it('never echoes a card number a client used as a field name', async () => {
    const pan = '4111111111111111';
    const unknownField = await api.call('POST', '/cards', { token, body: { user_id: 'usr_1', amount: 1, currency: 'USD', [pan]: 1 } });
    const unknownParameter = await api.call('GET', `/cards?${pan}=1&4111-1111-1111-1111=2`, { token });
    const repeated = await api.call('POST', '/auth/token', { rawBody: `{"api_key":"a","${pan}":1,"${pan}":2}` });
    for (const response of [unknownField, unknownParameter, repeated]) {
      expect(response.status).toBe(400);
      expect(response.body.error.fields.map((f: { field: string }) => f.field)).toContain('[redacted]');
      expect(JSON.stringify(response.body)).not.toMatch(/4111.?1111.?1111.?1111/);
    }
    expect(captured).toHaveLength(0);
  });

  it('names the body itself `body` when it is not an object', async () => {
    for (const rawBody of ['null', '[]', '5']) {
      const response = await api.call('POST', '/charges', { token, rawBody, headers: { 'Idempotency-Key': 'k' } });
      expect(response.status).toBe(400);
      expect(response.body.error.fields).toEqual([{ field: 'body', message: 'must be a JSON object' }]);
    }
    expect(captured).toHaveLength(0);
  });

  it('refuses unknown query parameters whatever their name, __proto__ included', async () => {
    const response = await api.call('GET', '/cards?__proto__=x&constructor=y', { token });
    expect(response.status).toBe(400);
    expect(response.body.error.fields.map((f: { field: string }) => f.field).sort()).toEqual(['__proto__', 'constructor']);
    expect(captured).toHaveLength(0);
  });

  it('reads integer query parameters as plain decimal only', async () => {
    for (const limit of ['0x10', '1e1', '%205', '5.0', '0b11', '']) {
      const response = await api.call('GET', `/cards?limit=${limit}`, { token });
      expect(response.status, `limit=${limit}`).toBe(400);
      expect(response.body.error.fields).toEqual([{ field: 'limit', message: 'must be integer' }]);
    }
    expect(captured).toHaveLength(0);
    errorAnswer('NOT_FOUND');
    await api.call('GET', '/cards?limit=16', { token });
    await api.call('GET', '/cards', { token });
    expect(captured.map((c) => (c.body.variables as { first?: number }).first)).toEqual([16, 20]);
  });

  it('answers 409 for IDEMPOTENCY_KEY_IN_USE', async () => {
    errorAnswer('IDEMPOTENCY_KEY_IN_USE');
    const response = await api.call('POST', '/charges', {
      token,
      body: { card_id: 'card_1', amount: 1, currency: 'USD' },
      headers: { 'Idempotency-Key': 'k' },
    });
    expect(response.status).toBe(409);
    expect(response.body.error.code).toBe('IDEMPOTENCY_KEY_IN_USE');
    // When to retry: the original is in flight, and its answer is replayed to the retry.
    expect(response.headers.get('retry-after')).toBe('1');
    // The service knows how long its claim can last: its extensions.retryAfter is the header.
    errorAnswer('IDEMPOTENCY_KEY_IN_USE', { retryAfter: 3 });
    const hinted = await api.call('POST', '/charges', {
      token,
      body: { card_id: 'card_1', amount: 1, currency: 'USD' },
      headers: { 'Idempotency-Key': 'k' },
    });
    expect(hinted.status).toBe(409);
    expect(hinted.headers.get('retry-after')).toBe('3');
  });

  it('maps service field errors to REST field names', async () => {
    errorAnswer('BAD_USER_INPUT', {
      fields: [
        { field: 'input.cardId', message: 'unknown card' },
        { field: 'input.amount', message: 'too large' },
      ],
    });
    const response = await api.call('POST', '/charges', {
      token,
      body: { card_id: 'card_1', amount: 1, currency: 'USD' },
      headers: { 'Idempotency-Key': 'k' },
    });
    expect(response.status).toBe(400);
    expect(response.body.error.fields).toEqual([
      { field: 'card_id', message: 'unknown card' },
      { field: 'amount', message: 'too large' },
    ]);
    // The message is rebuilt from the REST names, never the service's GraphQL ones.
    expect(response.body.error.message).toBe('card_id: unknown card; amount: too large');
  });

  it('names list filters and pagination by their query parameters in a 400', async () => {
    errorAnswer('BAD_USER_INPUT', {
      fields: [
        { field: 'after', message: 'is not a cursor' },
        { field: 'filter.userId', message: 'is not a user id' },
        { field: '', message: 'Too many filters' },
      ],
    });
    const response = await api.call('GET', '/cards?cursor=zzz&user_id=usr_1', { token });
    expect(response.status).toBe(400);
    expect(response.body.error).toMatchObject({
      message: 'cursor: is not a cursor; user_id: is not a user id; Too many filters',
      fields: [
        { field: 'cursor', message: 'is not a cursor' },
        { field: 'user_id', message: 'is not a user id' },
      ],
    });
  });

  it('never passes GraphQL’s own input messages through: they name GraphQL types and repeat values', async () => {
    answer = {
      status: 200,
      body: JSON.stringify({
        errors: [
          { message: 'Variable "$id" got invalid value "4111111111111111"; ID cannot represent', extensions: { code: 'BAD_USER_INPUT' } },
        ],
      }),
    };
    const response = await api.call('GET', '/cards/card_1', { token });
    expect(response.status).toBe(400);
    expect(response.body.error.message).toBe('The request is not valid');
    expect(JSON.stringify(response.body)).not.toContain('4111111111111111');
  });

  it('treats an error inside the root field as a failure, never a 200 with a broken or emptied body', async () => {
    const card = {
      id: 'card_1',
      status: 'ACTIVE',
      amount: 5,
      currency: 'USD',
      bin: '400000',
      last4: '1111',
      brand: 'visa',
      expMonth: 1,
      expYear: 2030,
      expiresAt: '2030-01-01T00:00:00.000Z',
      createdAt: '2029-01-01T00:00:00.000Z',
      usedAt: null,
      canceledAt: null,
    };
    const partial = (data: unknown, error: Record<string, unknown>) => {
      answer = { status: 200, body: JSON.stringify({ data, errors: [error] }) };
    };
    // The owner comes from auth: with auth down the card has no user_id, which the contract requires.
    partial(
      { card: { ...card, owner: null } },
      {
        message: 'A service this request needs is temporarily unavailable; retry later',
        path: ['card', 'owner'],
        extensions: { code: 'SUBGRAPH_UNAVAILABLE' },
      },
    );
    const nested = await api.call('GET', '/cards/card_1', { token });
    expect(nested.status).toBe(503);
    expect(nested.body.error.code).toBe('SUBGRAPH_UNAVAILABLE');

    // A list whose items failed is not an empty list.
    partial(
      { cards: { edges: [], pageInfo: { hasNextPage: false, endCursor: null } } },
      { message: 'boom', path: ['cards', 'edges'], extensions: { code: 'INTERNAL_SERVER_ERROR' } },
    );
    const list = await api.call('GET', '/cards', { token });
    expect(list.status).toBe(500);
    expect(list.body.error.code).toBe('INTERNAL_SERVER_ERROR');

    // An error the bridge cannot place (no path) beside data is a failure too.
    partial({ card: { ...card, owner: { id: 'usr_1' } } }, { message: 'nope', extensions: { code: 'FORBIDDEN' } });
    expect((await api.call('GET', '/cards/card_1', { token })).status).toBe(403);

    // Complete data still answers 200.
    answer = { status: 200, body: JSON.stringify({ data: { card: { ...card, owner: { id: 'usr_1' } } } }) };
    const whole = await api.call('GET', '/cards/card_1', { token });
    expect(whole.status).toBe(200);
    expect(whole.body.user_id).toBe('usr_1');
  });

  it('answers 500 when the router’s errors are not a list', async () => {
    answer = { status: 200, body: JSON.stringify({ errors: 'boom' }) };
    const response = await api.call('GET', '/cards/card_1', { token });
    expect(response.status).toBe(500);
    expect(response.body.error).toMatchObject({ code: 'INTERNAL_SERVER_ERROR', message: 'Internal server error' });
  });

  it('answers 503 with a fixed message, never the router’s text naming its subgraphs', async () => {
    // The router's detailed text, as it answers an admin's token (the bridge forwards the
    // caller's): the bridge's own fixed message still stands in for it.
    for (const code of ['SUBGRAPH_UNAVAILABLE', 'SERVICE_UNAVAILABLE']) {
      answer = {
        status: 200,
        body: JSON.stringify({
          data: null,
          errors: [{ message: 'Subgraph "charges" is unavailable (ECONNREFUSED)', path: ['charge'], extensions: { code } }],
        }),
      };
      const response = await api.call('GET', '/charges/ch_1', { token });
      expect(response.status).toBe(503);
      expect(response.body.error).toMatchObject({ code, message: 'The API is temporarily unavailable; retry with backoff' });
    }
  });

  it('sets Retry-After from the error when the router sent no header', async () => {
    errorAnswer('RATE_LIMITED', { retryAfter: 12.2 });
    const response = await api.call('POST', '/cards/card_1/reveal', { token });
    expect(response.status).toBe(429);
    expect(response.headers.get('retry-after')).toBe('13');
  });

  it('tells the client when to retry on every 503 and 429: the router’s Retry-After when it sent one, else 5 s', async () => {
    const retryAfterOf = async () => (await api.call('GET', '/charges/ch_1', { token })).headers.get('retry-after');
    // The router never answered, a subgraph is down, a gateway in front of the router failed.
    answer = { status: 200, body: '', drop: true };
    expect(await retryAfterOf()).toBe('5');
    for (const code of ['SUBGRAPH_UNAVAILABLE', 'SERVICE_UNAVAILABLE']) {
      errorAnswer(code);
      expect(await retryAfterOf(), code).toBe('5');
    }
    for (const status of [502, 503, 504]) {
      answer = { status, body: '<html>down</html>' };
      expect(await retryAfterOf(), String(status)).toBe('5');
    }
    // A proxy's 429 without the header, a RATE_LIMITED without extensions.retryAfter.
    answer = { status: 429, body: 'slow down' };
    expect(await retryAfterOf()).toBe('5');
    errorAnswer('RATE_LIMITED');
    expect(await retryAfterOf()).toBe('5');
    // The router's own value wins (its signing-key outage says 5 itself; a proxy may say more).
    answer = { status: 503, headers: { 'retry-after': '30' }, body: '<html>maintenance</html>' };
    expect(await retryAfterOf()).toBe('30');
    errorAnswer('RATE_LIMITED', { retryAfter: 42 });
    expect(await retryAfterOf()).toBe('42');
    // Whole seconds only, as the contract documents it: a proxy's HTTP-date is replaced by the default.
    answer = { status: 503, headers: { 'retry-after': 'Wed, 21 Oct 2026 07:28:00 GMT' }, body: '<html>maintenance</html>' };
    expect(await retryAfterOf()).toBe('5');
    // Not on other failures.
    errorAnswer('INTERNAL_SERVER_ERROR');
    expect(await retryAfterOf()).toBeNull();
  });

  it('answers 500, not 400, when the router does not know the bridge’s hash (a deployment fault)', async () => {
    errorAnswer('PERSISTED_QUERY_NOT_FOUND', {}, 400);
    const response = await api.call('GET', '/cards/card_1', { token });
    expect(response.status).toBe(500);
    expect(response.body.error).toMatchObject({ code: 'INTERNAL_SERVER_ERROR', message: 'Internal server error' });
  });

  it('answers 503 when a proxy in front of the router answers 502 without JSON', async () => {
    answer = { status: 502, body: '<html>bad gateway</html>' };
    const response = await api.call('GET', '/cards/card_1', { token });
    expect(response.status).toBe(503);
  });

  it('maps a proxy’s non-JSON 401 and 429 to 401 and 429, and any other such answer to 500 without its headers', async () => {
    answer = { status: 401, body: 'Unauthorized' };
    const refused = await api.call('GET', '/cards/card_1', { token });
    expect(refused.status).toBe(401);
    expect(refused.body.error.code).toBe('UNAUTHENTICATED');
    expect(refused.headers.get('www-authenticate')).toBe('Bearer');

    answer = { status: 429, headers: { 'retry-after': '7' }, body: '<html>slow down</html>' };
    const limited = await api.call('GET', '/cards/card_1', { token });
    expect(limited.status).toBe(429);
    expect(limited.body.error.code).toBe('RATE_LIMITED');
    expect(limited.headers.get('retry-after')).toBe('7');

    answer = { status: 400, headers: { 'retry-after': '7', ratelimit: 'limit=1' }, body: '<html>bad request</html>' };
    const other = await api.call('GET', '/cards/card_1', { token });
    expect(other.status).toBe(500);
    expect(other.body.error.code).toBe('INTERNAL_SERVER_ERROR');
    expect(other.headers.get('retry-after')).toBeNull();
    expect(other.headers.get('ratelimit')).toBeNull();
  });

  it('tells a client whose unkeyed card issue met a 503 that the outcome is unknown, and a keyed request to retry with its key', async () => {
    const unknownOutcome = /^The outcome is unknown: the request may have been applied\. Check the resource/;
    const sameKey = 'The API is temporarily unavailable; retry with backoff and the same Idempotency-Key';
    const issue = (headers: Record<string, string> = {}) =>
      api.call('POST', '/cards', { token, body: { user_id: 'usr_1', amount: 10, currency: 'USD' }, headers });
    const refund = () =>
      api.call('POST', '/charges/ch_1/refunds', { token, body: { amount: 5 }, headers: { 'Idempotency-Key': 'refund-2' } });

    // The router took the request and never answered (a timeout after the write).
    answer = { status: 200, body: '', drop: true };
    const dropped = await issue();
    expect(dropped.status).toBe(503);
    expect(dropped.body.error).toMatchObject({ code: 'SERVICE_UNAVAILABLE', message: expect.stringMatching(unknownOutcome) });
    expect((await issue({ 'Idempotency-Key': 'issue-1' })).body.error.message).toBe(sameKey);
    // A refund always carries a key (the contract requires it): its 503 says to retry with it.
    const keyed = await refund();
    expect(keyed.status).toBe(503);
    expect(keyed.body.error).toMatchObject({ code: 'SERVICE_UNAVAILABLE', message: sameKey });
    // A read, or a call that does the same when repeated, is safe to retry.
    expect((await api.call('GET', '/charges/ch_1', { token })).body.error.message).toBe(
      'The API is temporarily unavailable; retry with backoff',
    );
    expect((await api.call('POST', '/cards/card_1/cancel', { token })).body.error.message).toBe(
      'The API is temporarily unavailable; retry with backoff',
    );

    // The same for a subgraph that failed mid-request and a gateway timeout in front of the router.
    errorAnswer('SUBGRAPH_UNAVAILABLE');
    expect((await issue()).body.error).toMatchObject({ code: 'SUBGRAPH_UNAVAILABLE', message: expect.stringMatching(unknownOutcome) });
    expect((await refund()).body.error).toMatchObject({ code: 'SUBGRAPH_UNAVAILABLE', message: sameKey });
    answer = { status: 504, body: '<html>gateway timeout</html>' };
    const timedOut = await issue();
    expect(timedOut.status).toBe(503);
    expect(timedOut.body.error.message).toMatch(unknownOutcome);
    expect((await refund()).body.error.message).toBe(sameKey);
  });

  it('never sends a call that waited out ROUTER_TIMEOUT_MS for a router connection, and says a retry is safe', async () => {
    const sentToRouter: string[] = [];
    let healthzHeld: () => void = () => {};
    const held = new Promise<void>((resolve) => {
      healthzHeld = resolve;
    });
    // A router that holds the readiness probe (undici gives it 2 s) on the bridge's only connection.
    const slowRouter = await startLoopbackServer((req, res, body) => {
      if (req.url === '/healthz') {
        healthzHeld();
        return;
      }
      sentToRouter.push(body);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ data: null, errors: [{ message: 'Card not found', extensions: { code: 'NOT_FOUND' } }] }));
    });
    const oneConnection = createBridge({
      config: bridgeConfigSchema.parse({
        LOG_LEVEL: 'silent',
        ROUTER_URL: `${slowRouter.url}/graphql`,
        ROUTER_CONNECTIONS: '1',
        ROUTER_TIMEOUT_MS: '300',
      }),
      logger: silentLogger,
    });
    const url = await oneConnection.start(0);
    const checked = createContractChecker(url);
    try {
      const readiness = fetch(`${url}/readyz`);
      await held;
      // Queued behind the probe past its 300 ms: an unkeyed card issue, whose 503 would otherwise mean "outcome unknown".
      const issue = await checked.call('POST', '/cards', { token, body: { user_id: 'usr_1', amount: 10, currency: 'USD' } });
      expect(issue.status).toBe(503);
      expect(issue.body.error).toMatchObject({
        code: 'SERVICE_UNAVAILABLE',
        message: 'The API is temporarily unavailable; retry with backoff',
      });
      expect(sentToRouter).toEqual([]);
      expect((await readiness).status).toBe(503);
      // The connection is free again: calls go through.
      expect((await checked.call('GET', '/cards/card_1', { token })).status).toBe(404);
      expect(sentToRouter).toHaveLength(1);
    } finally {
      await oneConnection.close();
      await slowRouter.close();
    }
  });

  it('treats a client that goes away mid-body as the client’s doing: nothing sent to the router, an info line, not an error', async () => {
    const { logger, parsed } = capturingLogger('openapi-bridge');
    const watched = createBridge({
      config: bridgeConfigSchema.parse({ LOG_LEVEL: 'silent', ROUTER_URL: `${fakeRouter.url}/graphql` }),
      logger,
    });
    const url = await watched.start(0);
    try {
      const requestId = 'req-gone-mid-body';
      const received = new Promise((resolve) => watched.server.server.once('request', resolve));
      const socket = connect(Number(new URL(url).port), '127.0.0.1');
      await new Promise((resolve) => socket.once('connect', resolve));
      // 10 of the 100 bytes it announced, then the client is gone (a phone losing signal, a killed worker).
      socket.write(
        'POST /charges HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n' +
          `Authorization: Bearer ${token}\r\nIdempotency-Key: k-aborted\r\nX-Request-Id: ${requestId}\r\n\r\n{"card_id"`,
      );
      await received;
      socket.destroy();
      // The bridge's one line about this request, whatever it says.
      await vi.waitFor(() => expect(parsed().some((line) => line.requestId === requestId)).toBe(true));
      const lines = parsed().filter((line) => line.requestId === requestId);
      expect(lines.map((line) => Number(line.level))).toEqual([30]);
      expect(lines[0]?.msg).toBe('client closed the connection before its body was complete');
      expect(captured).toEqual([]);
    } finally {
      await watched.close();
    }
  });

  it('answers a request target that is no URL with 400 in the envelope, and keeps serving', async () => {
    // Node's HTTP parser accepts `//[`; `new URL` throws on it, which used to end the process
    // from the metrics label computed when the response closed.
    const raw = await rawHttpRequest(bridgeUrl, 'GET //[ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    expect(raw).toMatch(/^HTTP\/1\.1 400/);
    expect(raw).toContain('"BAD_USER_INPUT"');
    expect(captured).toEqual([]);
    errorAnswer('NOT_FOUND');
    expect((await api.call('GET', '/cards/card_1', { token })).status).toBe(404);
  });

  it('answers an unknown route 404 and a wrong method 405 with closed-list codes, never cached, never echoing the path', async () => {
    const pan = '4000008225470017';
    const unknown = await fetch(`${bridgeUrl}/cards/${pan}/x`, { headers: { authorization: `Bearer ${token}` } });
    const unknownText = await unknown.text();
    expect(unknown.status).toBe(404);
    expect(unknown.headers.get('cache-control')).toBe('no-store');
    expect(JSON.parse(unknownText).error).toMatchObject({ code: 'NOT_FOUND', message: 'No route answers GET on this path' });
    expect(unknownText).not.toContain(pan);

    const wrongMethod = await fetch(`${bridgeUrl}/cards/${pan}`, { method: 'PUT', headers: { authorization: `Bearer ${token}` } });
    const wrongText = await wrongMethod.text();
    expect(wrongMethod.status).toBe(405);
    expect(wrongMethod.headers.get('allow')).toBe('GET');
    expect(wrongMethod.headers.get('cache-control')).toBe('no-store');
    const { error } = JSON.parse(wrongText);
    expect(Object.values(ErrorCode)).toContain(error.code);
    expect(error.code).toBe('BAD_USER_INPUT');
    expect(wrongText).not.toContain(pan);

    const missingAsset = await fetch(`${bridgeUrl}/docs/${pan}.js`);
    expect(missingAsset.status).toBe(404);
    expect(missingAsset.headers.get('cache-control')).toBe('no-store');
    expect(await missingAsset.text()).not.toContain(pan);
    expect(captured).toEqual([]);
  });

  it('never takes a PAN-shaped X-Request-Id: a fresh id is echoed and forwarded instead', async () => {
    errorAnswer('NOT_FOUND');
    const pan = '4111111111111111';
    const response = await api.call('GET', '/cards/card_1', { token, headers: { 'X-Request-Id': pan } });
    const fresh = response.headers.get('x-request-id');
    expect(fresh).toMatch(/^[0-9a-f-]{36}$/);
    expect(response.body.error.request_id).toBe(fresh);
    expect(captured[0]?.headers['x-request-id']).toBe(fresh);
    expect(JSON.stringify(response.body)).not.toContain(pan);
  });

  it('sets the security headers on every answer', async () => {
    errorAnswer('NOT_FOUND');
    const response = await api.call('GET', '/cards/card_1', { token });
    expect(response.headers.get('x-content-type-options')).toBe('nosniff');
    expect(response.headers.get('x-frame-options')).toBe('DENY');
    expect(response.headers.get('referrer-policy')).toBe('no-referrer');
    expect(response.headers.get('content-security-policy')).toBe("default-src 'none'; frame-ancestors 'none'");
    expect(response.headers.get('strict-transport-security')).toBeNull();
  });

  it('allows CORS only for configured origins', async () => {
    const preflight = (origin: string) =>
      fetch(`${bridge.url}/charges`, {
        method: 'OPTIONS',
        headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'idempotency-key' },
      });
    const allowed = await preflight('https://shop.example.com');
    expect(allowed.status).toBe(204);
    expect(allowed.headers.get('access-control-allow-origin')).toBe('https://shop.example.com');
    expect(allowed.headers.get('access-control-allow-methods')).toBe('GET, POST');
    expect(allowed.headers.get('access-control-allow-headers')).toContain('idempotency-key');
    const refused = await preflight('https://evil.example.net');
    expect(refused.headers.get('access-control-allow-origin')).toBeNull();
    expect(captured).toHaveLength(0);
  });
});

describe('the error code to status table', () => {
  const expected: Record<string, number> = {
    BAD_USER_INPUT: 400,
    UNAUTHENTICATED: 401,
    CARD_DECLINED: 402,
    FORBIDDEN: 403,
    NOT_FOUND: 404,
    IDEMPOTENCY_KEY_IN_USE: 409,
    PAYLOAD_TOO_LARGE: 413,
    IDEMPOTENCY_KEY_REUSED: 422,
    RATE_LIMITED: 429,
    INTERNAL_SERVER_ERROR: 500,
    SUBGRAPH_UNAVAILABLE: 503,
    SERVICE_UNAVAILABLE: 503,
    // The bridge's own documents refused by the router: the deployment's fault, never the client's.
    GRAPHQL_PARSE_FAILED: 500,
    GRAPHQL_VALIDATION_FAILED: 500,
    PERSISTED_QUERY_NOT_FOUND: 500,
    PERSISTED_QUERY_NOT_SUPPORTED: 500,
    OPERATION_LIMIT_EXCEEDED: 500,
  };

  it('covers every code of the closed list', () => {
    expect(Object.keys(expected).sort()).toEqual(Object.keys(ErrorCode).sort());
  });

  it.each(Object.entries(expected))('maps %s to %i', (code, status) => {
    expect(mapGraphQLErrors([{ message: 'x', extensions: { code } }], 'req', []).status).toBe(status);
  });

  it('hides unknown codes behind a generic 500', () => {
    const mapped = mapGraphQLErrors([{ message: 'secret detail', extensions: { code: 'SOMETHING_ELSE' } }], 'req', []);
    expect(mapped.status).toBe(500);
    expect(mapped.envelope.error.message).toBe('Internal server error');
  });

  it('reports the gravest cause when several fields fail', () => {
    const mapped = mapGraphQLErrors(
      [
        { message: 'gone', extensions: { code: 'NOT_FOUND' } },
        { message: 'who are you', extensions: { code: 'UNAUTHENTICATED' } },
      ],
      'req',
      [],
    );
    expect(mapped.status).toBe(401);
  });

  it('is documented on every API operation for the statuses any operation can meet', () => {
    const missing = routesOf(loadSpec())
      .filter((route) => route.graphqlOperation)
      .flatMap((route) =>
        [
          '400',
          '401',
          '429',
          '500',
          '503',
          ...(route.requiresAuth ? ['403', '404'] : []),
          ...(route.method === 'POST' ? ['413', '415'] : []),
        ]
          .filter((status) => !(status in route.responses))
          .map((status) => `${route.operationId} ${status}`),
      );
    expect(missing).toEqual([]);
  });
});
