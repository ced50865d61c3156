import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { selfSignedCertificate } from '@ghostpay/test-support';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const repoRoot = resolve(import.meta.dirname, '../..');

/**
 * `node router/src/main.ts` as the image runs it (NODE_ENV=production): how it stops on a signal
 * and how it serves TLS. The subgraph URLs are never dialled; `{ __typename }` is answered by the
 * router alone.
 */
describe('the router process (main.ts)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'router-main-'));
  const children: ChildProcess[] = [];

  let certificate: { certFile: string; keyFile: string };

  beforeAll(() => {
    certificate = selfSignedCertificate(dir);
  });
  afterAll(async () => {
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  interface Started {
    url: string;
    child: ChildProcess;
    /** Resolves once the process has written a line matching `pattern`. */
    logged(pattern: RegExp): Promise<void>;
    exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  }

  function startRouterProcess(env: Record<string, string>): Promise<Started> {
    const child = spawn(resolve(repoRoot, 'node_modules/.bin/node'), [resolve(repoRoot, 'router/src/main.ts')], {
      cwd: repoRoot,
      env: {
        PATH: process.env.PATH,
        NODE_ENV: 'production',
        ROUTER_PORT: '0',
        LOG_LEVEL: 'info',
        JWKS_URL: 'http://127.0.0.1:9/.well-known/jwks.json',
        ROUTER_SUBGRAPH_URLS: 'auth=http://127.0.0.1:9/graphql,cards=http://127.0.0.1:9/graphql,charges=http://127.0.0.1:9/graphql',
        ROUTER_SUBSCRIPTIONS: 'false',
        ...env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(child);
    let output = '';
    const waiters: Array<{ pattern: RegExp; done: () => void }> = [];
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((done) =>
      child.once('exit', (code, signal) => done({ code, signal })),
    );
    const onOutput = (chunk: Buffer) => {
      output += chunk.toString();
      for (const waiter of [...waiters]) {
        if (waiter.pattern.test(output)) {
          waiters.splice(waiters.indexOf(waiter), 1);
          waiter.done();
        }
      }
    };
    child.stdout?.on('data', onOutput);
    child.stderr?.on('data', onOutput);
    const logged = (pattern: RegExp) =>
      new Promise<void>((done, fail) => {
        if (pattern.test(output)) return done();
        waiters.push({ pattern, done });
        void exited.then(({ code, signal }) => fail(new Error(`router exited (${code ?? signal}) before ${pattern}:\n${output}`)));
      });
    return logged(/"msg":"listening"/).then(() => {
      const url =
        /"url":"(https?:\/\/127\.0\.0\.1:\d+)"[^\n]*"msg":"listening"|"msg":"listening"[^\n]*"url":"(https?:\/\/127\.0\.0\.1:\d+)"/.exec(
          output,
        );
      if (!url) throw new Error(`no listening url in:\n${output}`);
      return { url: (url[1] ?? url[2]) as string, child, logged, exited };
    });
  }

  it('answers a request in flight when SIGTERM arrives, then exits 0', { timeout: 90_000 }, async () => {
    const router = await startRouterProcess({ SHUTDOWN_TIMEOUT_MS: '20000' });
    const { port } = new URL(router.url);
    const body = JSON.stringify({ query: '{ __typename }' });
    const socket = connect(Number(port), '127.0.0.1');
    await once(socket, 'connect');
    let answer = '';
    socket.on('data', (chunk: Buffer) => {
      answer += chunk.toString();
    });
    const answered = new Promise<void>((done) => socket.once('close', () => done()));
    socket.on('error', () => {});
    // Half the body: the request is in flight, its handler waiting for the rest.
    socket.write(
      `POST /graphql HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body.slice(0, 5)}`,
    );
    // The signal lands while the router holds that request (it logs what it drains).
    const draining = router.logged(/"inFlight":1[^\n]*"msg":"shutting down/);
    // A round trip on another connection after the half request was written: by its answer the
    // router has read the first connection's headers (both arrive on one event loop, in order).
    await (await fetch(`${router.url}/healthz`)).text();
    router.child.kill('SIGTERM');
    await draining;
    socket.write(body.slice(5));
    await answered;
    expect(answer).toMatch(/^HTTP\/1\.1 200 /);
    expect(answer).toContain('"__typename":"Query"');
    expect(await router.exited).toEqual({ code: 0, signal: null });
  });

  it('serves HTTPS with TLS_CERT_FILE and TLS_KEY_FILE', { timeout: 90_000 }, async () => {
    const router = await startRouterProcess({ TLS_CERT_FILE: certificate.certFile, TLS_KEY_FILE: certificate.keyFile });
    const agent = new Agent({ connect: { rejectUnauthorized: false } });
    try {
      expect(router.url).toMatch(/^https:\/\//);
      const health = await request(`${router.url}/healthz`, { dispatcher: agent });
      expect(health.statusCode).toBe(200);
      await health.body.dump();
      const answer = await request(`${router.url}/graphql`, {
        method: 'POST',
        dispatcher: agent,
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ query: '{ __typename }' }),
      });
      expect(answer.statusCode).toBe(200);
      expect(await answer.body.json()).toEqual({ data: { __typename: 'Query' } });
    } finally {
      await agent.close();
      router.child.kill('SIGTERM');
      expect(await router.exited).toEqual({ code: 0, signal: null });
    }
  });
});
