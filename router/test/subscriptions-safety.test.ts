import { request as httpRequest } from 'node:http';
import { createJwtVerifier } from '@ghostpay/platform';
import { createTestTokenIssuer, type TestTokenIssuer, testAudience, testIssuer } from '@ghostpay/test-support';
import { createClient } from 'graphql-ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { sha256Hex } from '../src/persisted-queries.ts';
import { type StubSubgraphs, startRouter, startStubSubgraphs, writeManifest } from './router-harness.ts';
import { idleSubscriptions, wsClient } from './subscriptions-harness.ts';

/**
 * The subscription endpoints' refusals, over stand-in subgraphs: everything here is decided
 * before any upstream subscription (the upstream URL accepts no connection). A subscription
 * the router accepts still sends its first payload, resolved through the stand-in charges.
 */

const sseHeaders = { 'content-type': 'application/json', accept: 'text/event-stream' };

interface StreamedAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  /** Body bytes the client had handed to its socket when the answer arrived. */
  written: number;
}

/**
 * POSTs a JSON body of up to `maxBytes` to an SSE endpoint, chunked (no Content-Length) or
 * with the length declared, writing only as fast as the server reads (plus socket buffers),
 * and stops writing as soon as an answer arrives.
 */
function postStreamedBody(
  url: string,
  headers: Record<string, string>,
  options: { maxBytes: number; declareLength?: boolean },
): Promise<StreamedAnswer> {
  const head = Buffer.from('{"query":"subscription { chargeUpdated(id: \\"ch_1\\") { id } }","variables":{"pad":"');
  const tail = Buffer.from('"}}');
  const chunk = Buffer.alloc(64 * 1024, 'x');
  const padChunks = Math.floor((options.maxBytes - head.length - tail.length) / chunk.length);
  const length = head.length + padChunks * chunk.length + tail.length;
  return new Promise((resolve, reject) => {
    let written = 0;
    let answered = false;
    const req = httpRequest(
      url,
      {
        method: 'POST',
        headers: { ...sseHeaders, ...headers, ...(options.declareLength ? { 'content-length': String(length) } : {}) },
      },
      (res) => {
        answered = true;
        const at = written;
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (text: string) => {
          body += text;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body, written: at }));
        res.on('error', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body, written: at }));
      },
    );
    // Writing on after the server answered and closed fails with EPIPE/ECONNRESET: expected.
    req.on('error', (error) => {
      if (!answered) reject(error);
    });
    let sent = 0;
    const pump = () => {
      if (answered) return;
      if (sent === 0) {
        written += head.length;
        req.write(head);
      }
      while (sent < padChunks && !answered) {
        sent++;
        written += chunk.length;
        if (!req.write(chunk)) {
          req.once('drain', pump);
          return;
        }
      }
      if (!answered) {
        written += tail.length;
        req.end(tail);
      }
    };
    pump();
  });
}

describe('subscription endpoints: request body limit, safelist, error codes and suggestions', () => {
  let issuer: TestTokenIssuer;
  let subgraphs: StubSubgraphs;
  let router: Awaited<ReturnType<typeof startRouter>>;
  let safelisted: Awaited<ReturnType<typeof startRouter>>;
  let user: string;
  let admin: string;
  const trustedSubscription = 'subscription Watch($id: ID!) { chargeUpdated(id: $id) { id status } }';

  const start = (env: Record<string, string> = {}) =>
    startRouter({
      verifier: issuer.verifier,
      urls: subgraphs.urls,
      env,
      subscriptions: idleSubscriptions(issuer),
    });
  const sseUrl = (r: { url: string }) => `${r.url}/graphql/stream`;
  const wsUrl = (r: { url: string }) => `${r.url.replace(/^http/, 'ws')}/graphql`;

  beforeAll(async () => {
    issuer = await createTestTokenIssuer();
    subgraphs = await startStubSubgraphs(issuer.verifier);
    router = await start();
    const manifest = writeManifest([{ name: 'Watch', type: 'subscription', body: trustedSubscription }]);
    safelisted = await start({ ROUTER_PERSISTED_QUERIES: 'safelist', ROUTER_PQ_MANIFESTS: manifest });
    user = await issuer.bearer({ userId: 'usr_sub', role: 'user', apiKeyId: 'key_sub' });
    admin = await issuer.bearer({ userId: 'usr_admin', role: 'admin', apiKeyId: 'key_sub_admin' });
  });
  afterAll(async () => {
    await router?.close();
    await safelisted?.close();
    await subgraphs?.close();
  });

  describe('the SSE request body', () => {
    const limit = 256 * 1024;

    it('answers a body past ROUTER_MAX_BODY_BYTES with 413 while it is still being sent, and closes the connection', async () => {
      const answer = await postStreamedBody(sseUrl(router), { authorization: user }, { maxBytes: 64 * 1024 * 1024 });
      expect(answer.status).toBe(413);
      expect(JSON.parse(answer.body)).toMatchObject({ errors: [{ extensions: { code: 'PAYLOAD_TOO_LARGE' } }] });
      expect(answer.headers.connection).toBe('close');
      // The router stopped reading at the limit: what the client got out is the limit plus socket buffers, not 64 MiB.
      expect(answer.written).toBeLessThan(limit + 16 * 1024 * 1024);
    });

    it('answers a declared Content-Length past the limit with 413 before reading the body', async () => {
      const answer = await postStreamedBody(sseUrl(router), { authorization: user }, { maxBytes: 64 * 1024 * 1024, declareLength: true });
      expect(answer.status).toBe(413);
      expect(answer.written).toBeLessThan(limit + 16 * 1024 * 1024);
    });

    it('refuses a request without a token with 401 before reading its body', async () => {
      const answer = await postStreamedBody(sseUrl(router), {}, { maxBytes: 64 * 1024 * 1024 });
      expect(answer.status).toBe(401);
      expect(JSON.parse(answer.body)).toMatchObject({ errors: [{ extensions: { code: 'UNAUTHENTICATED' } }] });
      expect(answer.written).toBeLessThan(16 * 1024 * 1024);
    });

    it('refuses an invalid token with 401 before reading the body', async () => {
      const answer = await postStreamedBody(sseUrl(router), { authorization: 'Bearer a.b.c' }, { maxBytes: 64 * 1024 * 1024 });
      expect(answer.status).toBe(401);
      expect(answer.written).toBeLessThan(16 * 1024 * 1024);
    });

    it('answers a body that is not JSON with 400 GRAPHQL_PARSE_FAILED', async () => {
      const response = await fetch(sseUrl(router), { method: 'POST', headers: { ...sseHeaders, authorization: user }, body: '{"query":' });
      expect(response.status).toBe(400);
      expect(await response.json()).toMatchObject({ errors: [{ extensions: { code: 'GRAPHQL_PARSE_FAILED' } }] });
    });

    it('still serves a subscription whose body is within the limit', async () => {
      const controller = new AbortController();
      const response = await fetch(sseUrl(router), {
        method: 'POST',
        headers: { ...sseHeaders, authorization: user },
        body: JSON.stringify({ query: trustedSubscription, variables: { id: 'ch_ok', pad: 'x'.repeat(limit - 1024) } }),
        signal: controller.signal,
      });
      try {
        expect(response.status).toBe(200);
        expect(response.headers.get('content-type')).toContain('text/event-stream');
        const first = await readFirstEvent(response);
        expect(first).toEqual({ event: 'next', data: { data: { chargeUpdated: { id: 'ch_ok', status: 'AUTHORIZED' } } } });
      } finally {
        controller.abort();
      }
    });
  });

  describe('safelist mode (ROUTER_PERSISTED_QUERIES=safelist)', () => {
    const freeForm = 'subscription ($id: ID!) { chargeUpdated(id: $id) { id status amount } }';
    const byHash = { persistedQuery: { version: 1, sha256Hash: sha256Hex(trustedSubscription) } };

    it('refuses a non-admin WebSocket subscription that is not in the manifest with PERSISTED_QUERY_NOT_FOUND', async () => {
      const client = wsClient(wsUrl(safelisted), user);
      try {
        expect(await subscribeOnce(client, { query: freeForm, variables: { id: 'ch_ws' } })).toMatchObject({
          error: [{ extensions: { code: 'PERSISTED_QUERY_NOT_FOUND' } }],
        });
      } finally {
        await client.dispose();
      }
    });

    it("serves the manifest's subscription over WebSocket by exact body or by hash, running the manifest's text", async () => {
      const client = wsClient(wsUrl(safelisted), user);
      try {
        const expected = { next: { data: { chargeUpdated: { id: 'ch_ws', status: 'AUTHORIZED' } } } };
        expect(await subscribeOnce(client, { query: trustedSubscription, variables: { id: 'ch_ws' } })).toEqual(expected);
        // graphql-ws needs a query string: an empty one with the hash names the operation.
        expect(await subscribeOnce(client, { query: '', variables: { id: 'ch_ws' }, extensions: byHash })).toEqual(expected);
        expect(await subscribeOnce(client, { query: freeForm, variables: { id: 'ch_ws' }, extensions: byHash })).toEqual(expected);
      } finally {
        await client.dispose();
      }
    });

    it('lets an admin token subscribe with a free-form document (the playground), as over HTTP', async () => {
      const client = wsClient(wsUrl(safelisted), admin);
      try {
        expect(await subscribeOnce(client, { query: freeForm, variables: { id: 'ch_admin' } })).toEqual({
          next: { data: { chargeUpdated: { id: 'ch_admin', status: 'AUTHORIZED', amount: 500 } } },
        });
      } finally {
        await client.dispose();
      }
    });

    it('refuses a non-admin SSE subscription that is not in the manifest, and serves the manifest one', async () => {
      const refused = await fetch(sseUrl(safelisted), {
        method: 'POST',
        headers: { ...sseHeaders, authorization: user },
        body: JSON.stringify({ query: freeForm, variables: { id: 'ch_sse' } }),
      });
      expect(await readFirstEvent(refused)).toMatchObject({
        event: 'next',
        data: { errors: [{ extensions: { code: 'PERSISTED_QUERY_NOT_FOUND' } }] },
      });
      for (const body of [
        { query: trustedSubscription, variables: { id: 'ch_sse' } },
        { variables: { id: 'ch_sse' }, extensions: byHash },
      ]) {
        const controller = new AbortController();
        const served = await fetch(sseUrl(safelisted), {
          method: 'POST',
          headers: { ...sseHeaders, authorization: user },
          body: JSON.stringify(body),
          signal: controller.signal,
        });
        try {
          expect(await readFirstEvent(served)).toEqual({
            event: 'next',
            data: { data: { chargeUpdated: { id: 'ch_sse', status: 'AUTHORIZED' } } },
          });
        } finally {
          controller.abort();
        }
      }
      // A GET by hash alone, with no `query` parameter at all.
      const search = new URLSearchParams({ variables: JSON.stringify({ id: 'ch_get' }), extensions: JSON.stringify(byHash) });
      const controller = new AbortController();
      const byGet = await fetch(`${sseUrl(safelisted)}?${search}`, {
        headers: { accept: sseHeaders.accept, authorization: user },
        signal: controller.signal,
      });
      try {
        expect(byGet.status).toBe(200);
        expect(await readFirstEvent(byGet)).toEqual({
          event: 'next',
          data: { data: { chargeUpdated: { id: 'ch_get', status: 'AUTHORIZED' } } },
        });
      } finally {
        controller.abort();
      }
    });
  });

  describe('the shape of an SSE request', () => {
    const body = JSON.stringify({ query: trustedSubscription, variables: { id: 'ch_shape' } });
    const served = { event: 'next', data: { data: { chargeUpdated: { id: 'ch_shape', status: 'AUTHORIZED' } } } };

    it('serves any Accept header that includes text/event-stream', async () => {
      for (const accept of [
        'text/event-stream; charset=utf-8',
        'text/event-stream, application/json',
        'application/json;q=0.9, TEXT/EVENT-STREAM',
      ]) {
        const controller = new AbortController();
        const response = await fetch(sseUrl(router), {
          method: 'POST',
          headers: { 'content-type': 'application/json', accept, authorization: user },
          body,
          signal: controller.signal,
        });
        try {
          expect(response.status, accept).toBe(200);
          expect(await readFirstEvent(response)).toEqual(served);
        } finally {
          controller.abort();
        }
      }
    });

    it('answers every malformed request in the JSON error envelope with a code and the matching status', async () => {
      const search = (params: Record<string, string>) => `${sseUrl(router)}?${new URLSearchParams(params)}`;
      const cases: { name: string; url?: string; init: RequestInit; status: number; code: string }[] = [
        {
          name: 'Accept without event streams',
          init: { method: 'POST', headers: { ...sseHeaders, accept: 'application/json' }, body },
          status: 406,
          code: 'BAD_USER_INPUT',
        },
        {
          name: 'event streams refused by q=0',
          init: { method: 'POST', headers: { ...sseHeaders, accept: 'text/event-stream;q=0, */*' }, body },
          status: 406,
          code: 'BAD_USER_INPUT',
        },
        {
          name: 'a text/plain body',
          init: { method: 'POST', headers: { ...sseHeaders, 'content-type': 'text/plain' }, body },
          status: 415,
          code: 'BAD_USER_INPUT',
        },
        { name: 'a JSON array body', init: { method: 'POST', headers: sseHeaders, body: '[]' }, status: 400, code: 'BAD_USER_INPUT' },
        { name: 'an empty body', init: { method: 'POST', headers: sseHeaders }, status: 400, code: 'BAD_USER_INPUT' },
        {
          name: 'variables: []',
          init: { method: 'POST', headers: sseHeaders, body: JSON.stringify({ query: trustedSubscription, variables: [] }) },
          status: 400,
          code: 'BAD_USER_INPUT',
        },
        {
          name: 'query: 5',
          init: { method: 'POST', headers: sseHeaders, body: JSON.stringify({ query: 5 }) },
          status: 400,
          code: 'BAD_USER_INPUT',
        },
        {
          name: 'operationName: 5',
          init: { method: 'POST', headers: sseHeaders, body: JSON.stringify({ query: trustedSubscription, operationName: 5 }) },
          status: 400,
          code: 'BAD_USER_INPUT',
        },
        {
          name: 'extensions: "x"',
          init: { method: 'POST', headers: sseHeaders, body: JSON.stringify({ query: trustedSubscription, extensions: 'x' }) },
          status: 400,
          code: 'BAD_USER_INPUT',
        },
        {
          name: 'a query that does not parse',
          init: { method: 'POST', headers: sseHeaders, body: JSON.stringify({ query: 'subscription {' }) },
          status: 400,
          code: 'GRAPHQL_PARSE_FAILED',
        },
        {
          name: 'GET with unparsable variables',
          url: search({ query: trustedSubscription, variables: '{nope' }),
          init: { headers: { accept: sseHeaders.accept } },
          status: 400,
          code: 'BAD_USER_INPUT',
        },
        {
          name: 'GET with variables that are a list',
          url: search({ query: trustedSubscription, variables: '[1]' }),
          init: { headers: { accept: sseHeaders.accept } },
          status: 400,
          code: 'BAD_USER_INPUT',
        },
        { name: 'PUT', init: { method: 'PUT', headers: sseHeaders, body }, status: 405, code: 'BAD_USER_INPUT' },
      ];
      for (const { name, url, init, status, code } of cases) {
        const response = await fetch(url ?? sseUrl(router), {
          ...init,
          headers: { ...(init.headers as Record<string, string>), authorization: user },
        });
        expect(response.status, name).toBe(status);
        expect(response.headers.get('content-type'), name).toContain('application/json');
        expect(await response.json(), name).toMatchObject({ errors: [{ message: expect.any(String), extensions: { code } }] });
      }
    });
  });

  describe('documents with several operations', () => {
    it('serves the named subscription of a document whose other operation uses a fragment it does not', async () => {
      const document = `
        subscription Watch($id: ID!) { chargeUpdated(id: $id) { ...Head } }
        query Other($id: ID!) { charge(id: $id) { ...Money } }
        fragment Money on Charge { amount currency }
        fragment Head on Charge { id ...State }
        fragment State on Charge { status }`;
      const client = wsClient(wsUrl(router), user);
      try {
        expect(await subscribeOnce(client, { query: document, operationName: 'Watch', variables: { id: 'ch_doc' } })).toEqual({
          next: { data: { chargeUpdated: { id: 'ch_doc', status: 'AUTHORIZED' } } },
        });
      } finally {
        await client.dispose();
      }
    });
  });

  describe('validation and variable errors', () => {
    const misspelt = 'subscription ($id: ID!) { chargeUpdated(id: $id) { statu } }';

    it('strips "did you mean" suggestions for non-admins over WebSocket, with GRAPHQL_VALIDATION_FAILED', async () => {
      const client = wsClient(wsUrl(router), user);
      try {
        expect(await subscribeOnce(client, { query: misspelt, variables: { id: 'ch_1' } })).toEqual({
          error: [{ message: 'Cannot query field "statu" on type "Charge".', extensions: { code: 'GRAPHQL_VALIDATION_FAILED' } }],
        });
      } finally {
        await client.dispose();
      }
      const forAdmin = wsClient(wsUrl(router), admin);
      try {
        expect(await subscribeOnce(forAdmin, { query: misspelt, variables: { id: 'ch_1' } })).toMatchObject({
          error: [{ message: expect.stringMatching(/Did you mean "status"\?$/), extensions: { code: 'GRAPHQL_VALIDATION_FAILED' } }],
        });
      } finally {
        await forAdmin.dispose();
      }
    });

    it('strips them over SSE too', async () => {
      const response = await fetch(sseUrl(router), {
        method: 'POST',
        headers: { ...sseHeaders, authorization: user },
        body: JSON.stringify({ query: misspelt, variables: { id: 'ch_1' } }),
      });
      expect(await readFirstEvent(response)).toMatchObject({
        event: 'next',
        data: { errors: [{ message: 'Cannot query field "statu" on type "Charge".', extensions: { code: 'GRAPHQL_VALIDATION_FAILED' } }] },
      });
    });

    it('answers variables that do not coerce with BAD_USER_INPUT', async () => {
      const client = wsClient(wsUrl(router), user);
      try {
        const query = 'subscription ($id: ID!) { chargeUpdated(id: $id) { id } }';
        expect(await subscribeOnce(client, { query, variables: {} })).toMatchObject({
          error: [{ message: 'Variable "$id" of required type "ID!" was not provided.', extensions: { code: 'BAD_USER_INPUT' } }],
        });
        expect(await subscribeOnce(client, { query, variables: { id: { nested: true } } })).toMatchObject({
          error: [{ extensions: { code: 'BAD_USER_INPUT' } }],
        });
      } finally {
        await client.dispose();
      }
    });
  });
});

describe('subscription endpoints when the auth service’s signing keys cannot be fetched', () => {
  let issuer: TestTokenIssuer;
  let subgraphs: StubSubgraphs;
  let router: Awaited<ReturnType<typeof startRouter>>;

  beforeAll(async () => {
    issuer = await createTestTokenIssuer();
    subgraphs = await startStubSubgraphs(issuer.verifier);
    router = await startRouter({
      // Port 9 (discard) on loopback: nothing listens, so every JWKS fetch is refused.
      verifier: createJwtVerifier({ jwksUrl: 'http://127.0.0.1:9/.well-known/jwks.json', issuer: testIssuer, audience: testAudience }),
      urls: subgraphs.urls,
      subscriptions: idleSubscriptions(issuer),
    });
  });
  afterAll(async () => {
    await router?.close();
    await subgraphs?.close();
  });

  it('closes the WebSocket with 1013 (try again later), which graphql-ws clients retry, not the fatal 4401', async () => {
    const closes: { code: number; reason: string }[] = [];
    let connecting = 0;
    const client = createClient({
      url: `${router.url.replace(/^http/, 'ws')}/graphql`,
      webSocketImpl: WebSocket,
      connectionParams: { authorization: await issuer.bearer({ userId: 'usr_jwks', role: 'user' }) },
      retryAttempts: 1,
      retryWait: async () => {},
      on: {
        connecting: () => connecting++,
        closed: (event) => closes.push({ code: (event as CloseEvent).code, reason: String((event as CloseEvent).reason) }),
      },
    });
    try {
      const outcome = await subscribeOnce(client as ReturnType<typeof wsClient>, {
        query: 'subscription { chargeUpdated(id: "ch_1") { id } }',
      });
      // The client gave up only after its one retry: the close was not fatal to it.
      expect(connecting).toBe(2);
      expect(closes).toEqual([
        { code: 1013, reason: 'Token signing keys are temporarily unavailable' },
        { code: 1013, reason: 'Token signing keys are temporarily unavailable' },
      ]);
      expect(outcome).toMatchObject({ error: { code: 1013 } });
    } finally {
      await client.dispose();
    }
  });

  it('answers SSE with 503 SERVICE_UNAVAILABLE and Retry-After, not 401', async () => {
    const response = await fetch(`${router.url}/graphql/stream`, {
      method: 'POST',
      headers: { ...sseHeaders, authorization: await issuer.bearer({ userId: 'usr_jwks', role: 'user' }) },
      body: JSON.stringify({ query: 'subscription { chargeUpdated(id: "ch_1") { id } }' }),
    });
    expect(response.status).toBe(503);
    expect(response.headers.get('retry-after')).toBe('5');
    expect(await response.json()).toMatchObject({ errors: [{ extensions: { code: 'SERVICE_UNAVAILABLE' } }] });
  });
});

/** Subscribes over graphql-ws and settles with the first payload or error, then unsubscribes. */
function subscribeOnce(
  client: ReturnType<typeof wsClient>,
  payload: { query: string; operationName?: string; variables?: Record<string, unknown>; extensions?: Record<string, unknown> },
): Promise<{ next?: unknown; error?: unknown }> {
  return new Promise((resolve) => {
    let stop = () => {};
    let settled = false;
    const settle = (outcome: { next?: unknown; error?: unknown }) => {
      if (settled) return;
      settled = true;
      // After this turn: graphql-ws cannot complete from inside its own sink call.
      setImmediate(() => stop());
      resolve(outcome);
    };
    stop = client.subscribe(payload, {
      next: (value) => settle({ next: value }),
      error: (error) => settle({ error }),
      complete: () => settle({ error: 'completed without a payload' }),
    });
  });
}

/** The first `event:`/`data:` block of an SSE response. */
async function readFirstEvent(response: Response): Promise<{ event?: string; data?: unknown }> {
  const reader = (response.body as ReadableStream<Uint8Array>).getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`stream ended before an event: ${buffer}`);
    buffer += decoder.decode(value, { stream: true });
    for (const block of buffer.split('\n\n').slice(0, -1)) {
      const event = /^event: (.*)$/m.exec(block)?.[1];
      const data = /^data: (.*)$/m.exec(block)?.[1];
      if (event) return { event, data: data ? JSON.parse(data) : undefined };
    }
  }
}
