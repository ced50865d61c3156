import { createServer, type IncomingMessage, type Server } from 'node:http';

/** Headers that describe one hop, not the message: never forwarded. */
const hopByHop = new Set([
  'connection',
  'keep-alive',
  'transfer-encoding',
  'upgrade',
  'proxy-connection',
  'te',
  'trailer',
  'host',
  'content-length',
]);

/** One attempt to send a request to one backend; `outcome` is set when it ends. */
export interface Attempt {
  readonly backend: string;
  readonly startedAt: number;
  /** `answered` with the backend's HTTP status, or `failed` (connection refused or reset, timeout): retried elsewhere. */
  outcome?: { kind: 'answered'; status: number } | { kind: 'failed'; error: string };
}

export interface LoadBalancer {
  readonly url: string;
  /** Requests answered, and attempts retried on another backend after a connection failure. */
  readonly stats: { requests: number; retries: number; failures: number };
  /** The attempts `backend` (one of the URLs `backends()` returns) has not answered yet, oldest first. */
  inFlight(backend: string): Attempt[];
  close(): Promise<void>;
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/**
 * A tiny round-robin HTTP load balancer, like a Kubernetes Service with retries: each request
 * goes to the next backend; when the connection fails (refused while a replica is down, reset
 * while it closes keep-alive connections) it is retried on the next one, at most `maxAttempts`
 * times within `deadlineMs`. Retrying a request that may have reached a dying backend is safe
 * here only because every mutation the suite sends carries an idempotency key — which is
 * exactly what the scenarios prove. Backend HTTP answers (any status) are passed through.
 */
export async function startLoadBalancer(
  backends: () => string[],
  options: { maxAttempts?: number; deadlineMs?: number } = {},
): Promise<LoadBalancer> {
  const maxAttempts = options.maxAttempts ?? 12;
  const deadlineMs = options.deadlineMs ?? 20_000;
  const stats = { requests: 0, retries: 0, failures: 0 };
  let next = 0;
  const pending = new Set<Attempt>();
  const server: Server = createServer(async (req, res) => {
    const body = await readBody(req);
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(req.headers)) {
      if (!hopByHop.has(name) && typeof value === 'string') headers[name] = value;
    }
    const deadline = Date.now() + deadlineMs;
    for (let attempt = 1; ; attempt++) {
      const targets = backends();
      const target = targets[next++ % targets.length] as string;
      const sent: Attempt = { backend: target, startedAt: performance.now() };
      pending.add(sent);
      try {
        const response = await fetch(`${target}${req.url ?? '/'}`, {
          method: req.method,
          headers,
          ...(body.length && req.method !== 'GET' && req.method !== 'HEAD' ? { body } : {}),
          signal: AbortSignal.timeout(Math.max(1, deadline - Date.now())),
        });
        const payload = Buffer.from(await response.arrayBuffer());
        sent.outcome = { kind: 'answered', status: response.status };
        pending.delete(sent);
        const out: Record<string, string> = {};
        response.headers.forEach((value, name) => {
          if (!hopByHop.has(name) && name !== 'content-encoding') out[name] = value;
        });
        stats.requests++;
        res.writeHead(response.status, out);
        res.end(payload);
        return;
      } catch (error) {
        sent.outcome = {
          kind: 'failed',
          error: `${(error as Error).name}: ${((error as Error).cause as Error | undefined)?.message ?? (error as Error).message}`,
        };
        pending.delete(sent);
        const timedOut = (error as Error).name === 'TimeoutError';
        if (timedOut || attempt >= maxAttempts || Date.now() >= deadline) {
          stats.failures++;
          res.writeHead(502, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ error: { code: 'BAD_GATEWAY', message: 'no backend answered' } }));
          return;
        }
        stats.retries++;
        await new Promise((done) => setTimeout(done, Math.min(50 * attempt, 500)));
      }
    }
  });
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  const address = server.address();
  if (!address || typeof address === 'string') throw new Error('no address');
  return {
    url: `http://127.0.0.1:${address.port}`,
    stats,
    inFlight: (backend) => [...pending].filter((attempt) => attempt.backend === backend),
    async close() {
      server.closeAllConnections();
      await new Promise((done) => server.close(done));
    },
  };
}
