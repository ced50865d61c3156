import { freePort, type LoopbackServer, startLoopbackServer } from '@ghostpay/test-support';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRouterClient, RouterUnreachableError } from '../src/router-client.ts';

// The bridge's router client against a real HTTP server standing in for the router.
let server: LoopbackServer;
beforeAll(async () => {
  server = await startLoopbackServer((req, res, body) => {
    if (req.url === '/graphql') {
      res.writeHead(200, { 'content-type': 'application/json', 'x-request-id': String(req.headers['x-request-id']) });
      res.end(JSON.stringify({ data: { sent: JSON.parse(body) } }));
    } else if (req.url === '/big') {
      res.end(JSON.stringify({ data: { blob: 'x'.repeat(4096) } }));
    } else {
      res.end('not json');
    }
  });
});
afterAll(async () => {
  await server.close();
});

const call = { operationName: 'Op', sha256Hash: 'abc', variables: { a: 1 }, headers: { 'x-request-id': 'req-1' } };

describe('router client', () => {
  it('sends the persisted operation by hash and returns status, headers and the parsed body', async () => {
    const client = createRouterClient({ url: `${server.url}/graphql` });
    const result = await client.execute(call);
    expect(result.status).toBe(200);
    expect(result.headers['x-request-id']).toBe('req-1');
    expect(result.body?.data?.sent).toEqual({
      operationName: 'Op',
      variables: { a: 1 },
      extensions: { persistedQuery: { version: 1, sha256Hash: 'abc' } },
    });
    await client.close();
  });

  it('answers body undefined for a response that is not JSON', async () => {
    const client = createRouterClient({ url: `${server.url}/other` });
    expect((await client.execute(call)).body).toBeUndefined();
    await client.close();
  });

  it('refuses a response larger than maxResponseBytes as RouterUnreachableError', async () => {
    const client = createRouterClient({ url: `${server.url}/big`, maxResponseBytes: 1024 });
    await expect(client.execute(call)).rejects.toThrow(RouterUnreachableError);
    await expect(client.execute(call)).rejects.toThrow(/router response failed: response larger than 1024 bytes/);
    await client.close();
  });

  it('reports a router that is not listening as RouterUnreachableError', async () => {
    const port = await freePort();
    const client = createRouterClient({ url: `http://127.0.0.1:${port}/graphql` });
    await expect(client.execute(call)).rejects.toThrow(/router unreachable/);
    await client.close();
  });
});

describe('router client: time waiting for a connection', () => {
  it('never sends a call still queued past timeoutMs, and keeps the keep-alive connection for the next', async () => {
    const seen: { operationName: string; port: number | undefined }[] = [];
    // Answers the first call slowly but steadily (a chunk every 80 ms: never idle past bodyTimeout),
    // holding the client's only connection for ~400 ms.
    const slow = await startLoopbackServer((req, res, body) => {
      const { operationName } = JSON.parse(body) as { operationName: string };
      seen.push({ operationName, port: req.socket.remotePort });
      res.writeHead(200, { 'content-type': 'application/json' });
      if (operationName !== 'Slow') {
        res.end('{"data":{"ok":true}}');
        return;
      }
      const chunks = ['{"data":', '{"ok"', ':', 'true', '}', '}'];
      const next = () => {
        const chunk = chunks.shift();
        if (chunk === undefined) res.end();
        else {
          res.write(chunk);
          setTimeout(next, 80);
        }
      };
      next();
    });
    const client = createRouterClient({ url: `${slow.url}/graphql`, connections: 1, timeoutMs: 200 });
    try {
      const first = client.execute({ ...call, operationName: 'Slow' });
      const queued = client.execute({ ...call, operationName: 'Queued' });
      const queuedError = await queued.then(
        () => undefined,
        (error: unknown) => error,
      );
      expect(queuedError).toBeInstanceOf(RouterUnreachableError);
      expect((queuedError as RouterUnreachableError).sent).toBe(false);
      expect((await first).body?.data).toEqual({ ok: true });
      expect((await client.execute({ ...call, operationName: 'Next' })).body?.data).toEqual({ ok: true });
      expect(seen.map((s) => s.operationName)).toEqual(['Slow', 'Next']);
      // One connection throughout: dropping the stale call did not cost the keep-alive one.
      expect(new Set(seen.map((s) => s.port)).size).toBe(1);
    } finally {
      await client.close();
      await slow.close();
    }
  });
});
