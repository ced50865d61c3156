import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { clientTlsOptions, serverTlsOptions } from '@ghostpay/platform';
import { createTestTokenIssuer, issueTestCertificate, type TestTokenIssuer, testCertificateAuthority } from '@ghostpay/test-support';
import { Agent, fetch as undiciFetch } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAnalyticsEmitter, tlsFetch } from '../src/analytics-emitter.ts';
import { post, type StubSubgraphs, startRouter, startStubSubgraphs } from './router-harness.ts';

const dir = mkdtempSync(join(tmpdir(), 'ghostpay-mtls-'));
const file = (name: string) => join(dir, name);
/** A CA, a server certificate for 127.0.0.1 and client certificates from that CA and from a stranger CA. */
function makeCertificates() {
  testCertificateAuthority(dir, 'ca');
  testCertificateAuthority(dir, 'other-ca');
  issueTestCertificate(dir, 'server', { usage: 'server' });
  issueTestCertificate(dir, 'router', { usage: 'client' });
  issueTestCertificate(dir, 'intruder', { usage: 'client', ca: 'other-ca' });
}

describe('mTLS between the router and subgraphs', () => {
  let issuer: TestTokenIssuer;
  let subgraphs: StubSubgraphs;
  let router: Awaited<ReturnType<typeof startRouter>>;

  beforeAll(async () => {
    makeCertificates();
    issuer = await createTestTokenIssuer();
    subgraphs = await startStubSubgraphs(issuer.verifier, undefined, {
      tls: {
        TLS_CERT_FILE: file('server.pem'),
        TLS_KEY_FILE: file('server.key'),
        TLS_CLIENT_CA_FILE: file('ca.pem'),
        TLS_RELOAD_INTERVAL_MS: 10_000,
      },
    });
    router = await startRouter({
      verifier: issuer.verifier,
      urls: subgraphs.urls,
      env: {
        ROUTER_SUBGRAPH_TLS_CA_FILE: file('ca.pem'),
        ROUTER_SUBGRAPH_TLS_CERT_FILE: file('router.pem'),
        ROUTER_SUBGRAPH_TLS_KEY_FILE: file('router.key'),
      },
    });
  });
  afterAll(async () => {
    await router?.close();
    await subgraphs?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('serves the subgraphs over https only', () => {
    for (const url of Object.values(subgraphs.urls)) expect(url).toMatch(/^https:\/\/127\.0\.0\.1:\d+\/graphql$/);
  });

  it('resolves a query through subgraphs that demand the router’s client certificate', async () => {
    const response = await post(
      router.graphqlUrl,
      { query: '{ me { id } }' },
      { authorization: await issuer.bearer({ userId: 'usr_tls', role: 'user' }) },
    );
    expect(response.body.errors).toBeUndefined();
    expect(response.body.data).toEqual({ me: { id: 'usr_tls' } });
  });

  it('refuses a client without a certificate, and one whose certificate another CA signed', async () => {
    const hitsBefore = subgraphs.hits.auth ?? 0;
    const call = (connect: Record<string, Buffer>) =>
      undiciFetch(subgraphs.urls.auth as string, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ query: '{ __typename }' }),
        dispatcher: new Agent({ connect }),
      });
    const ca = readFileSync(file('ca.pem'));
    await expect(call({ ca })).rejects.toThrow();
    await expect(call({ ca, cert: readFileSync(file('intruder.pem')), key: readFileSync(file('intruder.key')) })).rejects.toThrow();
    // The trusted client certificate is accepted on the same port: the refusals were about identity.
    const accepted = await call({ ca, cert: readFileSync(file('router.pem')), key: readFileSync(file('router.key')) });
    expect(accepted.status).toBe(200);
    expect(subgraphs.hits.auth).toBe(hitsBefore + 1);
  });

  it('delivers analytics events to an ingest that demands the router’s client certificate', async () => {
    const received: string[] = [];
    const tls = serverTlsOptions({
      TLS_CERT_FILE: file('server.pem'),
      TLS_KEY_FILE: file('server.key'),
      TLS_CLIENT_CA_FILE: file('ca.pem'),
      TLS_RELOAD_INTERVAL_MS: 10_000,
    });
    const ingest = createServer(tls ?? {}, async (req, res) => {
      let body = '';
      for await (const chunk of req) body += chunk;
      received.push(body);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ stored: 1, duplicates: 0, rejected: 0 }));
    });
    ingest.listen(0, '127.0.0.1');
    await once(ingest, 'listening');
    const ingestUrl = `https://127.0.0.1:${(ingest.address() as AddressInfo).port}/internal/events`;
    const emit = async (fetch: typeof globalThis.fetch) => {
      const emitter = createAnalyticsEmitter({ url: ingestUrl, token: () => 't', fetch, retryMaxMs: 50 });
      emitter.emit({
        timestamp: new Date().toISOString(),
        requestId: 'req_tls',
        traceId: null,
        operationName: 'Tls',
        operationType: 'query',
        apiKeyId: null,
        userId: null,
        role: null,
        httpStatus: 200,
        errorCodes: [],
        latencyMs: 1,
        subgraphTimings: [],
      });
      await emitter.close();
      return emitter.metrics;
    };
    try {
      const files = { caFile: file('ca.pem'), certFile: file('router.pem'), keyFile: file('router.key') };
      // Trusting the CA without presenting the certificate: refused at the handshake, never stored.
      expect(await emit(tlsFetch(clientTlsOptions({ caFile: files.caFile })))).toMatchObject({ sent: 0 });
      expect(received).toEqual([]);
      expect(await emit(tlsFetch(clientTlsOptions(files)))).toMatchObject({ sent: 1, dropped: 0 });
      expect(received).toHaveLength(1);
      expect(received[0]).toContain('req_tls');
    } finally {
      ingest.closeAllConnections();
      await new Promise((done) => ingest.close(done));
    }
  });
});
