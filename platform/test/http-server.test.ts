import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { Agent, type IncomingMessage, request } from 'node:http';
import { connect, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { capturingLogger, freshDatabase, rawHttpRequest } from '@ghostpay/test-support';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  BodyTooLargeError,
  baseConfigSchema,
  createLogger,
  createMetricsRegistry,
  createServiceServer,
  env,
  type Logger,
  parseConfig,
  readBody,
  type ServiceServer,
  type ServiceServerOptions,
  sendJson,
  serviceServerOptionsFrom,
} from '../src/index.ts';

const slowServer = fileURLToPath(new URL('./fixtures/slow-server.ts', import.meta.url));
const silent = createLogger({ service: 'test', level: 'silent' });
/** A server of service "demo" with its own registry, silent unless given a logger. */
function demoServer(options: Omit<ServiceServerOptions, 'service' | 'registry' | 'logger'> & { logger?: Logger }): ServiceServer {
  return createServiceServer({ service: 'demo', logger: silent, registry: createMetricsRegistry('demo'), ...options });
}
let service: ServiceServer | undefined;
afterEach(async () => {
  await service?.close();
  service = undefined;
});

describe('service server', () => {
  it('answers health, metrics with the request histogram, and the handler', async () => {
    service = demoServer({
      handler: (_req, res) => sendJson(res, 200, { hello: 'world' }),
    });
    await service.listen(0);
    expect(await (await fetch(`${service.url}/healthz`)).json()).toEqual({ status: 'ok' });
    expect(await (await fetch(`${service.url}/anything`)).json()).toEqual({ hello: 'world' });
    const metrics = await (await fetch(`${service.url}/metrics`)).text();
    expect(metrics).toMatch(/http_request_duration_seconds_count\{service="demo",method="GET",route="unmatched",status_code="200"\} 1/);
    expect(metrics).toContain('nodejs_eventloop_lag_seconds');
  });

  /** The `route` label of every `http_request_duration_seconds` series the service exposes. */
  async function routeLabels(url: string): Promise<string[]> {
    const metrics = await (await fetch(`${url}/metrics`)).text();
    const routes = [...metrics.matchAll(/^http_request_duration_seconds_count\{[^}]*route="([^"]*)"/gm)].map((m) => m[1]!);
    return [...new Set(routes)].sort();
  }

  it('labels the platform routes and the declared ones as themselves and every other path `unmatched`, whatever a client asks for', async () => {
    service = demoServer({
      knownRoutes: ['/widgets'],
      handler: (_req, res) => sendJson(res, 404, {}),
    });
    await service.listen(0);
    const paths = ['/healthz', '/readyz?full=1', '/widgets', '/widgets?page=2', '/widgets/42', '/', '/a4111111111111111', '/%2e%2e'];
    for (let i = 0; i < 50; i++) paths.push(`/x${i}`, `/x${i}/deeper`);
    for (const path of paths) await (await fetch(`${service.url}${path}`)).arrayBuffer();
    expect(await routeLabels(service.url)).toEqual(['/healthz', '/readyz', '/widgets', 'unmatched']);
  });

  it('labels /healthz, /readyz and /metrics as themselves even when the service maps routes itself', async () => {
    service = demoServer({
      routeLabel: (req) => (req.url === '/graphql' ? '/graphql' : '/'),
      handler: (_req, res) => sendJson(res, 404, {}),
    });
    await service.listen(0);
    for (const path of ['/healthz', '/readyz', '/metrics?x=1', '/graphql', '/elsewhere'])
      await (await fetch(`${service.url}${path}`)).arrayBuffer();
    expect(await routeLabels(service.url)).toEqual(['/', '/graphql', '/healthz', '/metrics', '/readyz']);
  });

  it('labels a request `unmatched` when the service’s own labelling throws, and keeps serving', async () => {
    service = demoServer({
      routeLabel: (req) => new URL(req.url ?? '/', 'http://demo.invalid').pathname,
      handler: (_req, res) => sendJson(res, 404, {}),
    });
    await service.listen(0);
    // Node accepts this request target; `new URL` throws on it.
    const raw = await rawHttpRequest(service!.url, 'GET //[ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    expect(raw).toMatch(/^HTTP\/1\.1 404/);
    expect(await (await fetch(`${service.url}/healthz`)).json()).toEqual({ status: 'ok' });
    expect(await routeLabels(service.url)).toEqual(['/healthz', 'unmatched']);
  });

  it('turns /readyz to 503 when the database is down, and back when it returns', async () => {
    const database = await freshDatabase();
    let down = false;
    service = demoServer({
      handler: (_req, res) => sendJson(res, 404, {}),
      readiness: [{ name: 'database', check: () => (down ? Promise.reject(new Error('closed')) : database.ping()) }],
      readinessTimeoutMs: 1_000,
    });
    await service.listen(0);
    const ready = await fetch(`${service.url}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ status: 'ready', checks: { database: 'up' } });
    await database.close(); // drops the database: the pool can no longer reach it
    const unready = await fetch(`${service.url}/readyz`);
    expect(unready.status).toBe(503);
    expect(await unready.json()).toEqual({ status: 'unavailable', checks: { database: 'down' } });
    down = true;
  });

  /** Writes `parts` on a raw socket to the service, then collects what comes back until the server closes it (or 5 s pass). */
  async function rawExchange(parts: string[], pauseMs = 0): Promise<{ text: string; closedByServer: boolean }> {
    const url = new URL(service!.url);
    const socket = connect(Number(url.port), url.hostname);
    await once(socket, 'connect');
    let text = '';
    socket.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
    socket.on('error', () => {});
    for (const part of parts) {
      socket.write(part);
      if (pauseMs) await new Promise((resolve) => setTimeout(resolve, pauseMs));
    }
    const closed = once(socket, 'close').then(() => true);
    const closedByServer = await Promise.race([closed, new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 5_000))]);
    socket.destroy();
    return { text, closedByServer };
  }

  it('counts a request whose client went away before any answer as status 499, not 200', async () => {
    let answered = 0;
    const handlerReached = Promise.withResolvers<void>();
    service = demoServer({
      handler: async (req, res) => {
        if (req.url === '/slow') {
          handlerReached.resolve();
          await once(res, 'close');
          return;
        }
        answered++;
        sendJson(res, 200, { ok: true });
      },
    });
    await service.listen(0);
    const socket = connect(Number(new URL(service.url).port), '127.0.0.1');
    await once(socket, 'connect');
    socket.write('GET /slow HTTP/1.1\r\nhost: x\r\n\r\n');
    await handlerReached.promise;
    socket.destroy();
    await (await fetch(`${service.url}/fast`)).json();
    const metrics = async () => (await fetch(`${service!.url}/metrics`)).text();
    await vi.waitFor(async () =>
      expect(await metrics()).toMatch(
        /http_request_duration_seconds_count\{service="demo",method="GET",route="unmatched",status_code="499"\} 1/,
      ),
    );
    expect(await metrics()).toMatch(
      /http_request_duration_seconds_count\{service="demo",method="GET",route="unmatched",status_code="200"\} 1\n/,
    );
    expect(answered).toBe(1);
  });

  it('takes a client that leaves mid-body as gone, not as an error: a debug line, nothing sent, counted 499 and never 500', async () => {
    // The router's and every subgraph's handler (createGraphQLHandler) let readBody's ClientGoneError through to the server.
    const log = capturingLogger('demo', { level: 'debug' });
    const handlerReading = Promise.withResolvers<void>();
    service = demoServer({
      logger: log.logger,
      handler: async (req, res) => {
        const body = readBody(req, 1_000);
        handlerReading.resolve();
        sendJson(res, 200, { length: (await body).length });
      },
    });
    await service.listen(0);
    const socket = connect(Number(new URL(service.url).port), '127.0.0.1');
    await once(socket, 'connect');
    let answer = '';
    socket.setEncoding('utf8').on('data', (chunk: string) => (answer += chunk));
    socket.on('error', () => {});
    socket.write('POST /graphql HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 800\r\n\r\n{"query":');
    await handlerReading.promise;
    socket.destroy();
    const metrics = async () => (await fetch(`${service!.url}/metrics`)).text();
    await vi.waitFor(async () =>
      expect(await metrics()).toMatch(
        /http_request_duration_seconds_count\{service="demo",method="POST",route="unmatched",status_code="499"\} 1\n/,
      ),
    );
    const gone = 'connection closed before the request body was complete; request dropped';
    await vi.waitFor(() => expect(log.parsed().some((line) => line.msg === gone)).toBe(true));
    expect(log.parsed().find((line) => line.msg === gone)).toMatchObject({
      level: 20,
      method: 'POST',
      route: 'unmatched',
    });
    expect(log.parsed().filter((line) => (line.level as number) >= 40)).toEqual([]);
    expect(await metrics()).not.toMatch(/status_code="5\d\d"/);
    expect(answer).toBe('');
  });

  it('answers 408 and closes the connection of a client dribbling its headers or its body (slow loris)', async () => {
    const outcomes: string[] = [];
    service = demoServer({
      headersTimeoutMs: 200,
      requestTimeoutMs: 400,
      handler: async (req, res) => {
        try {
          const body = await readBody(req, 1_000);
          sendJson(res, 200, { length: body.length });
          outcomes.push('read');
        } catch {
          outcomes.push('aborted');
        }
      },
    });
    await service.listen(0);
    // Headers never finished.
    const headers = await rawExchange(['POST / HTTP/1.1\r\n', 'host: x\r\n']);
    expect(headers.closedByServer).toBe(true);
    expect(headers.text).toMatch(/^HTTP\/1\.1 408 /);
    // Headers sent, 2 of 10 declared body bytes, then nothing: the handler's read ends too.
    const body = await rawExchange(['POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\nab']);
    expect(body.closedByServer).toBe(true);
    expect(body.text).toMatch(/^HTTP\/1\.1 408 /);
    await vi.waitFor(() => expect(outcomes).toEqual(['aborted']), { timeout: 5_000 });
    // A prompt client on a keep-alive connection idle for longer than both bounds is still served.
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const get = () =>
        new Promise<{ status: number; reused: boolean }>((resolve, reject) => {
          const req = request(`${service!.url}/healthz`, { agent }, (res) => {
            res.resume();
            res.on('end', () => resolve({ status: res.statusCode ?? 0, reused: req.reusedSocket }));
          });
          req.on('error', reject);
          req.end();
        });
      expect(await get()).toEqual({ status: 200, reused: false });
      await new Promise((resolve) => setTimeout(resolve, 700));
      expect(await get()).toEqual({ status: 200, reused: true });
    } finally {
      agent.destroy();
    }
  });

  it('holds at most maxConnections open: past it a new connection is closed unanswered while the open ones are still served', async () => {
    service = demoServer({
      maxConnections: 3,
      handler: (_req, res) => sendJson(res, 200, { ok: true }),
    });
    await service.listen(0);
    const port = Number(new URL(service.url).port);
    /** A raw keep-alive connection; `get()` sends a request on it and resolves with the status line, or `closed` if the server closes it first. */
    const connection = async () => {
      const socket = connect(port, '127.0.0.1');
      await once(socket, 'connect');
      let text = '';
      let closed = false;
      let settle: (() => void) | undefined;
      socket.setEncoding('utf8').on('data', (chunk: string) => {
        text += chunk;
        settle?.();
      });
      socket.on('close', () => {
        closed = true;
        settle?.();
      });
      // A request written to a socket the server already closed may fail with EPIPE or ECONNRESET.
      socket.on('error', () => {});
      const get = () =>
        new Promise<string>((resolve) => {
          text = '';
          settle = () => {
            if (text.includes('{"ok":true}')) resolve(text.split('\r\n')[0]!);
            else if (closed) resolve('closed');
          };
          if (closed) resolve('closed');
          else socket.write('GET /x HTTP/1.1\r\nhost: x\r\n\r\n');
        });
      return { get, socket };
    };
    const held = [await connection(), await connection(), await connection()];
    // Answered, so the server has accepted each one: three open keep-alive connections.
    for (const { get } of held) expect(await get()).toBe('HTTP/1.1 200 OK');
    const extra = [await connection(), await connection()];
    for (const { get } of extra) expect(await get()).toBe('closed');
    // The held connections, idle meanwhile, are still served.
    for (const { get } of held) expect(await get()).toBe('HTTP/1.1 200 OK');
    // A cap, not a ban: once one closes, a new connection is served.
    held[0]!.socket.destroy();
    await vi.waitFor(
      async () => {
        const { get, socket } = await connection();
        try {
          expect(await get()).toBe('HTTP/1.1 200 OK');
        } finally {
          socket.destroy();
        }
      },
      { timeout: 5_000 },
    );
    for (const { socket } of held) socket.destroy();
    await vi.waitFor(
      async () => {
        const metrics = await (await fetch(`${service!.url}/metrics`)).text();
        // The two extra connections (and any attempt above made before the server saw the close).
        expect(Number(/^http_connections_dropped_total\{service="demo"\} (\d+)$/m.exec(metrics)?.[1])).toBeGreaterThanOrEqual(2);
        // Only the scrape's own connection is left.
        expect(metrics).toMatch(/^http_open_connections\{service="demo"\} 1$/m);
      },
      { timeout: 5_000 },
    );
  });

  it('counts an upgraded connection (a WebSocket) against maxConnections for as long as it is open', async () => {
    const upgraded: Socket[] = [];
    service = demoServer({
      maxConnections: 1,
      handler: (_req, res) => sendJson(res, 200, { ok: true }),
      onUpgrade: (_req, socket) => {
        socket.write('HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n');
        // Read and close on the client's close, as a WebSocket server does (the server's sockets allow half-open).
        socket.resume().on('end', () => socket.destroy());
        upgraded.push(socket);
      },
    });
    await service.listen(0);
    const socket = connect(Number(new URL(service.url).port), '127.0.0.1');
    try {
      await once(socket, 'connect');
      socket.write('GET /graphql HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n');
      const [switched] = await once(socket, 'data');
      expect(String(switched)).toMatch(/^HTTP\/1\.1 101 /);
      // The upgraded socket holds the only slot: a plain request finds no room.
      await expect(fetch(`${service.url}/healthz`)).rejects.toThrow();
      socket.destroy();
      await vi.waitFor(async () => expect((await fetch(`${service!.url}/healthz`)).status).toBe(200), { timeout: 5_000 });
    } finally {
      socket.destroy();
      // The server's close does not end upgraded sockets: their owner (the WebSocket server) does.
      for (const held of upgraded) held.destroy();
    }
  });

  it('caps connections at 10000 unless told otherwise, and reads MAX_CONNECTIONS for it', () => {
    service = demoServer({ handler: () => {} });
    expect(service.server.maxConnections).toBe(10_000);
    expect(parseConfig(baseConfigSchema, {})).toMatchObject({ ok: true, config: { MAX_CONNECTIONS: 10_000 } });
    expect(parseConfig(baseConfigSchema, { MAX_CONNECTIONS: '500' })).toMatchObject({ ok: true, config: { MAX_CONNECTIONS: 500 } });
    expect(parseConfig(baseConfigSchema, { MAX_CONNECTIONS: '0' }).ok).toBe(false);
  });

  it('takes its base settings (SHUTDOWN_TIMEOUT_MS, MAX_CONNECTIONS) from a config built on the base schema in one spread', async () => {
    const schema = baseConfigSchema.extend({ DEMO_PORT: env.port(4100) });
    const parsed = parseConfig(schema, { SHUTDOWN_TIMEOUT_MS: '50', MAX_CONNECTIONS: '7' });
    if (!parsed.ok) throw new Error(parsed.problems.join('\n'));
    expect(serviceServerOptionsFrom(parsed.config)).toEqual({ shutdownTimeoutMs: 50, maxConnections: 7 });
    // A service whose deps leave them out gets the server's defaults.
    expect(serviceServerOptionsFrom({})).toEqual({});
    const handlerReached = Promise.withResolvers<void>();
    service = demoServer({
      handler: () => handlerReached.resolve(), // never answers: only the shutdown bound ends it
      ...serviceServerOptionsFrom(parsed.config),
    });
    expect(service.server.maxConnections).toBe(7);
    await service.listen(0);
    const hanging = fetch(`${service.url}/hang`).catch((error: unknown) => error);
    await handlerReached.promise;
    await service.close(); // returns once the 50 ms bound cut the request (10 s by default)
    expect(await hanging).toBeInstanceOf(Error);
    const defaults = demoServer({
      handler: () => {},
      ...serviceServerOptionsFrom({}),
    });
    expect(defaults.server.maxConnections).toBe(10_000);
  });

  it('on SIGTERM finishes the in-flight request, refuses new connections and exits 0', async () => {
    const child = spawn(process.execPath, [slowServer], { stdio: ['ignore', 'pipe', 'inherit'] });
    let output = '';
    child.stdout.setEncoding('utf8');
    const port = await new Promise<number>((resolve) => {
      child.stdout.on('data', (chunk: string) => {
        output += chunk;
        const match = /listening (\d+)/.exec(output);
        if (match) resolve(Number(match[1]));
      });
    });
    const inFlight = fetch(`http://127.0.0.1:${port}/slow`).then((r) => r.json());
    await new Promise((resolve) => setTimeout(resolve, 300));
    child.kill('SIGTERM');
    await new Promise((resolve) => setTimeout(resolve, 200));
    await expect(fetch(`http://127.0.0.1:${port}/slow`)).rejects.toThrow();
    expect(await inFlight).toEqual({ done: true, closedPools: false });
    const [code] = await once(child, 'exit');
    expect(code).toBe(0);
    expect(output).toContain('pools-closed');
  });
});

describe('readBody', () => {
  /** A service whose handler reads the body (limit 1,000 bytes) and reports what readBody did. */
  async function bodyServer() {
    const outcomes: string[] = [];
    service = demoServer({
      handler: async (req, res) => {
        try {
          const body = await readBody(req, 1_000);
          outcomes.push(`read ${body.length}`);
          sendJson(res, 200, { length: body.length, sha: createHash('sha256').update(body).digest('hex') });
        } catch (error) {
          outcomes.push(error instanceof BodyTooLargeError ? 'too large' : `error ${(error as Error).message}`);
          if (error instanceof BodyTooLargeError) sendJson(res, 413, { error: 'too large' });
          else res.destroy();
        }
      },
    });
    await service.listen(0);
    return { url: new URL(service.url), outcomes };
  }

  /** POSTs `chunks` with chunked transfer encoding (no Content-Length), a pause between them. */
  async function postChunked(url: URL, chunks: Buffer[], agent?: Agent): Promise<{ status: number; body: string; reusedSocket: boolean }> {
    const headers = { 'transfer-encoding': 'chunked' };
    const req = request({ host: url.hostname, port: url.port, method: 'POST', path: '/', headers, agent });
    const response = once(req, 'response') as Promise<[IncomingMessage]>;
    req.on('error', () => {}); // the server may close once it has answered 413
    for (const chunk of chunks) {
      req.write(chunk);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    req.end();
    const [res] = await response;
    let body = '';
    for await (const part of res) body += part;
    return { status: res.statusCode ?? 0, body, reusedSocket: req.reusedSocket };
  }

  it('joins a body that arrives in several chunks, byte for byte', async () => {
    const { url, outcomes } = await bodyServer();
    const chunks = [randomBytes(300), randomBytes(1), randomBytes(400), randomBytes(299)];
    const response = await postChunked(url, chunks);
    expect(response.status).toBe(200);
    expect(JSON.parse(response.body)).toEqual({ length: 1_000, sha: createHash('sha256').update(Buffer.concat(chunks)).digest('hex') });
    const empty = await fetch(url, { method: 'POST' });
    expect(await empty.json()).toMatchObject({ length: 0 });
    expect(outcomes).toEqual(['read 1000', 'read 0']);
  });

  it('refuses a declared Content-Length over the limit before reading, and a chunked body once it passes the limit, answering 413', async () => {
    const { url, outcomes } = await bodyServer();
    const declared = await fetch(url, { method: 'POST', body: 'x'.repeat(1_001) });
    expect(declared.status).toBe(413);
    const streamed = await postChunked(url, [Buffer.alloc(600), Buffer.alloc(600), Buffer.alloc(600)]);
    expect(streamed.status).toBe(413);
    expect(outcomes).toEqual(['too large', 'too large']);
  });

  it('keeps a keep-alive connection serving after refusing a streamed body past the limit', async () => {
    const { url, outcomes } = await bodyServer();
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      expect((await postChunked(url, [Buffer.alloc(600), Buffer.alloc(600), Buffer.alloc(600)], agent)).status).toBe(413);
      // The unread rest of the refused body must not stall the connection's next request.
      const next = await Promise.race([
        postChunked(url, [Buffer.from('{}')], agent),
        new Promise<never>((_, reject) => setTimeout(() => reject(new Error('the next request on the connection hung')), 3_000)),
      ]);
      expect(next).toMatchObject({ status: 200, reusedSocket: true });
      expect(outcomes).toEqual(['too large', 'read 2']);
    } finally {
      agent.destroy();
    }
  });

  it('rejects, instead of waiting for ever, when the client goes away mid-body', async () => {
    const { url, outcomes } = await bodyServer();
    const req = request({ host: url.hostname, port: url.port, method: 'POST', path: '/', headers: { 'content-length': '800' } });
    req.on('error', () => {});
    req.write(Buffer.alloc(100));
    // Let the handler start waiting for the rest of the body.
    await new Promise((resolve) => setTimeout(resolve, 100));
    req.destroy();
    await vi.waitFor(() => expect(outcomes).toHaveLength(1), { timeout: 5_000 });
    expect(outcomes[0]).toMatch(/^error /);
  });
});
