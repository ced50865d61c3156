import { ResponseTooLargeError, requestText } from '@ghostpay/platform';
import { type LoopbackServer, startLoopbackServer } from '@ghostpay/test-support';
import { Pool } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// requestText is the router's subgraph transport (platform/src/http-request.ts): undici's
// dispatch API with a plain handler, against a real HTTP server on loopback.
let server: LoopbackServer;
let pool: Pool;
beforeAll(async () => {
  server = await startLoopbackServer((req, res, body) => {
    if (req.url === '/echo') {
      res.writeHead(201, { 'content-type': 'application/json', 'x-seen': req.headers['x-probe'] ?? '' });
      res.end(JSON.stringify({ method: req.method, body }));
    } else if (req.url === '/chunked') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('héllo ');
      setTimeout(() => res.end('wörld'), 20);
    } else if (req.url === '/big') {
      res.end('x'.repeat(64 * 1024));
    } else if (req.url === '/stall') {
      res.writeHead(200);
      res.write('partial');
    } else if (req.url === '/drop') {
      req.socket.destroy();
    }
  });
  pool = new Pool(server.url, { connections: 4 });
});
afterAll(async () => {
  await pool.destroy();
  await server.close();
});

describe('requestText', () => {
  it('sends method, headers and body and returns status, headers and the whole text', async () => {
    const response = await requestText(pool, { method: 'POST', path: '/echo', headers: { 'x-probe': 'p1' }, body: '{"a":1}' });
    expect(response.statusCode).toBe(201);
    expect(response.headers['x-seen']).toBe('p1');
    expect(JSON.parse(response.text)).toEqual({ method: 'POST', body: '{"a":1}' });
  });

  it('joins a body that arrives in several chunks, multi-byte characters included', async () => {
    expect((await requestText(pool, { method: 'GET', path: '/chunked' })).text).toBe('héllo wörld');
  });

  it('aborts a body larger than maxResponseBytes with ResponseTooLargeError, and the pool keeps working', async () => {
    await expect(requestText(pool, { method: 'GET', path: '/big', maxResponseBytes: 1024 })).rejects.toBeInstanceOf(ResponseTooLargeError);
    expect((await requestText(pool, { method: 'GET', path: '/big', maxResponseBytes: 64 * 1024 })).text).toHaveLength(64 * 1024);
  });

  it('rejects with the signal reason when aborted mid-body or before starting', async () => {
    const deadline = new AbortController();
    const pending = requestText(pool, { method: 'GET', path: '/stall', signal: deadline.signal });
    setTimeout(() => deadline.abort(new Error('deadline')), 50);
    await expect(pending).rejects.toThrow('deadline');
    const aborted = AbortSignal.abort(new Error('already'));
    await expect(requestText(pool, { method: 'GET', path: '/echo', signal: aborted })).rejects.toThrow('already');
  });

  it('rejects invalid options with undici’s error, and the pool keeps working', async () => {
    await expect(requestText(pool, { method: 'GET', path: 'no-leading-slash' })).rejects.toMatchObject({ code: 'UND_ERR_INVALID_ARG' });
    expect((await requestText(pool, { method: 'GET', path: '/chunked' })).statusCode).toBe(200);
  });

  it('rejects with undici’s error code when the connection drops', async () => {
    await expect(requestText(pool, { method: 'POST', path: '/drop', body: 'x' })).rejects.toMatchObject({ code: 'UND_ERR_SOCKET' });
  });
});
