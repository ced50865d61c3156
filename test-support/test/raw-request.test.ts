/**
 * rawHttpRequest: the bytes given go out as they are (requests fetch refuses to send), and the
 * answer comes back whole, however the network split it.
 */
import { createServer, type Server } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { startLoopbackServer } from '../src/loopback-server.ts';
import { rawHttpRequest } from '../src/raw-request.ts';

/** A TCP server that keeps every byte it receives and, at the client's end, answers with `reply`. */
async function recordingServer(reply: (socket: import('node:net').Socket) => void) {
  const received: Buffer[] = [];
  // Half-open: the request's end is no answer's end (rawHttpRequest ends its side after writing).
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    socket.on('data', (chunk) => received.push(chunk));
    socket.on('end', () => reply(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  servers.push(server);
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, received: () => Buffer.concat(received) };
}

const servers: Server[] = [];
afterEach(async () => {
  for (const server of servers.splice(0)) await new Promise((resolve) => server.close(resolve));
});

describe('rawHttpRequest', () => {
  it('sends a request string as it is, in UTF-8, and resolves with the whole answer', async () => {
    const request = 'GET //[ HTTP/1.1\r\nHost: x\r\nX-Name: Zoë\nBare-LF: yes\r\nConnection: close\r\n\r\n';
    const server = await recordingServer((socket) => socket.end('HTTP/1.1 400 Bad Request\r\n\r\n'));
    expect(await rawHttpRequest(server.url, request)).toBe('HTTP/1.1 400 Bad Request\r\n\r\n');
    expect(server.received().equals(Buffer.from(request, 'utf8'))).toBe(true);
  });

  it('sends bytes that are no UTF-8 as they are', async () => {
    const request = Buffer.concat([Buffer.from('GET / HTTP/1.1\r\nX-Bytes: '), Buffer.from([0xff, 0xfe, 0x00]), Buffer.from('\r\n\r\n')]);
    const server = await recordingServer((socket) => socket.end('HTTP/1.1 400 Bad Request\r\n\r\n'));
    await rawHttpRequest(server.url, request);
    expect(server.received().equals(request)).toBe(true);
  });

  it('decodes a character the network split between two packets', async () => {
    const server = await recordingServer((socket) => {
      // 'é' is c3 a9: the first byte in one packet, the second in the next.
      socket.write(Buffer.from('HTTP/1.1 200 OK\r\n\r\ncaf\xc3', 'latin1'));
      setTimeout(() => socket.end(Buffer.from([0xa9])), 50);
    });
    expect(await rawHttpRequest(server.url, 'GET / HTTP/1.1\r\n\r\n')).toBe('HTTP/1.1 200 OK\r\n\r\ncafé');
  });

  it('talks to a real HTTP server', async () => {
    const server = await startLoopbackServer((req, res, body) => res.end(`${req.method} ${req.url} ${body}`));
    try {
      const answer = await rawHttpRequest(
        server.url,
        'POST /a?b=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}',
      );
      expect(answer).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
      expect(answer.endsWith('\r\n\r\nPOST /a?b=1 {}')).toBe(true);
    } finally {
      await server.close();
    }
  });
});
