import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { TLSSocket } from 'node:tls';
import { createDatabase, type DatabaseHandle } from '@ghostpay/db';
import { inCi, selfSignedCertificate } from '@ghostpay/test-support';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/** This machine's first non-loopback IPv4 address: a "remote" host for the client. */
const remoteAddress = Object.values(networkInterfaces())
  .flat()
  .find((address) => address && address.family === 'IPv4' && !address.internal)?.address;
/** Under CI a machine without one fails these tests instead of skipping them, as a missing PostgreSQL fails the run. */
const ci = inCi();

/**
 * A stand-in PostgreSQL server that records how each client opened its connection: with an
 * SSLRequest (then it answers 'S' and offers a self-signed certificate for 127.0.0.1, which no
 * client verifying certificates accepts) or with a plain-text StartupMessage (then it hangs up).
 */
let server: Server;
let port = 0;
const openings: string[] = [];
const dir = mkdtempSync(join(tmpdir(), 'ghostpay-tls-'));
const sockets = new Set<Socket>();

beforeAll(async () => {
  const { certFile, keyFile } = selfSignedCertificate(dir);
  const [cert, key] = [readFileSync(certFile), readFileSync(keyFile)];
  server = createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
    socket.once('data', (first) => {
      if (first.length >= 8 && first.readUInt32BE(0) === 8 && first.readUInt32BE(4) === 80877103) {
        openings.push('tls');
        socket.write('S');
        const secure = new TLSSocket(socket, { isServer: true, cert, key });
        secure.on('error', () => {});
      } else {
        openings.push('plain text');
        socket.destroy();
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '::', resolve));
  port = (server.address() as { port: number }).port;
});

afterAll(async () => {
  for (const socket of sockets) socket.destroy();
  await new Promise((resolve) => server?.close(resolve));
  rmSync(dir, { recursive: true, force: true });
});

/** How a handle for `url` opened its connection, and what its ping came to. */
async function attempt(url: string, use: (handle: DatabaseHandle) => Promise<unknown> = (handle) => handle.ping()) {
  openings.length = 0;
  const handle = await createDatabase({ url, poolSize: 1, connectionTimeoutMs: 3_000 });
  try {
    const outcome = await use(handle).then(
      () => 'connected',
      (error: Error) => error.message,
    );
    return { opening: openings[0], outcome };
  } finally {
    await handle.close().catch(() => {});
  }
}

describe.skipIf(!remoteAddress && !ci)('TLS for a PostgreSQL URL that does not say', () => {
  beforeAll(() => {
    if (!remoteAddress)
      throw new Error('CI is set and this machine has no non-loopback IPv4 address: the TLS default for a remote host cannot be tested');
  });

  it('uses TLS and verifies the certificate for a remote host', async () => {
    const { opening, outcome } = await attempt(`postgres://ghostpay:secret@${remoteAddress}:${port}/ghostpay`);
    expect(opening).toBe('tls');
    expect(outcome).toMatch(/self[- ]signed certificate/);
  });

  it('does so for the LISTEN connection too', async () => {
    const { opening, outcome } = await attempt(`postgres://ghostpay:secret@${remoteAddress}:${port}/ghostpay`, (handle) =>
      handle.listen('charges', () => {}),
    );
    expect(opening).toBe('tls');
    expect(outcome).toMatch(/self[- ]signed certificate/);
  });

  it('leaves it to the URL when it says (sslmode=disable: plain text) and off for this machine', async () => {
    expect((await attempt(`postgres://ghostpay:secret@${remoteAddress}:${port}/ghostpay?sslmode=disable`)).opening).toBe('plain text');
    expect((await attempt(`postgres://ghostpay:secret@127.0.0.1:${port}/ghostpay`)).opening).toBe('plain text');
    expect((await attempt(`postgres://ghostpay:secret@localhost:${port}/ghostpay`)).opening).toBe('plain text');
    // pg 8 reads sslmode=require as verify-full: still verified.
    const required = await attempt(`postgres://ghostpay:secret@127.0.0.1:${port}/ghostpay?sslmode=require`);
    expect(required).toMatchObject({ opening: 'tls', outcome: expect.stringMatching(/self[- ]signed certificate/) });
  });
});
