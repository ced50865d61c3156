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
