import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  createTestTokenIssuer,
  issueTestCertificate,
  type TestTokenIssuer,
  testAudience,
  testCertificateAuthority,
  testIssuer,
} from '@ghostpay/test-support';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createJwtVerifier, jwtVerifierOptionsFrom } from '../src/index.ts';

const dir = mkdtempSync(join(tmpdir(), 'ghostpay-jwks-mtls-'));
const file = (name: string) => join(dir, name);
/** A CA, a server certificate for 127.0.0.1 and a client certificate from that CA. */
function makeCertificates() {
  testCertificateAuthority(dir);
  issueTestCertificate(dir, 'server', { usage: 'server' });
  issueTestCertificate(dir, 'client', { usage: 'client' });
}

describe('JWKS from an auth service that demands client certificates (mTLS)', () => {
  let issuer: TestTokenIssuer;
  let server: Server;
  let jwksUrl = '';
  let served = 0;

  beforeAll(async () => {
    makeCertificates();
    issuer = await createTestTokenIssuer();
    server = createServer(
      {
        cert: readFileSync(file('server.pem')),
        key: readFileSync(file('server.key')),
        ca: readFileSync(file('ca.pem')),
        requestCert: true,
        rejectUnauthorized: true,
      },
      (_req, res) => {
        served++;
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(issuer.jwks));
      },
    );
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    jwksUrl = `https://127.0.0.1:${(server.address() as AddressInfo).port}/.well-known/jwks.json`;
  });
  afterAll(async () => {
    server?.closeAllConnections();
    await new Promise((done) => server?.close(done));
    rmSync(dir, { recursive: true, force: true });
  });

  const env = (extra: Record<string, string | undefined>) =>
    jwtVerifierOptionsFrom({
      JWT_ISSUER: testIssuer,
      JWT_AUDIENCE: testAudience,
      JWKS_URL: jwksUrl,
      JWKS_STALE_GRACE_SECONDS: 0,
      ...extra,
    });

  it('verifies a token with the key set fetched while presenting JWKS_TLS_CERT_FILE / JWKS_TLS_KEY_FILE', async () => {
    const verifier = createJwtVerifier(
      env({ JWKS_TLS_CA_FILE: file('ca.pem'), JWKS_TLS_CERT_FILE: file('client.pem'), JWKS_TLS_KEY_FILE: file('client.key') }),
    );
    const before = served;
    const principal = await verifier.verify(await issuer.mint({ userId: 'usr_mtls', role: 'merchant' }));
    expect(principal).toMatchObject({ userId: 'usr_mtls', role: 'merchant' });
    expect(served).toBe(before + 1);
  });

  it('cannot fetch it without the client certificate: SERVICE_UNAVAILABLE, never a verified token', async () => {
    const verifier = createJwtVerifier(env({ JWKS_TLS_CA_FILE: file('ca.pem') }));
    const before = served;
    await expect(verifier.verify(await issuer.mint({ userId: 'usr_mtls', role: 'merchant' }))).rejects.toMatchObject({
      extensions: { code: 'SERVICE_UNAVAILABLE' },
    });
    expect(served).toBe(before);
  });

  it('leaves the options without TLS when no JWKS_TLS_* is set', () => {
    expect(env({})).not.toHaveProperty('jwksTls');
  });
});
