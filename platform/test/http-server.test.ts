import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { freshDatabase } from '@ghostpay/test-support';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger, createMetricsRegistry, createServiceServer, type ServiceServer, sendJson } from '../src/index.ts';

const slowServer = fileURLToPath(new URL('./fixtures/slow-server.ts', import.meta.url));
const silent = createLogger({ service: 'test', level: 'silent' });
let service: ServiceServer | undefined;
afterEach(async () => {
  await service?.close();
  service = undefined;
});

describe('service server', () => {
  it('answers health, metrics with the request histogram, and the handler', async () => {
    service = createServiceServer({
      service: 'demo',
      logger: silent,
      registry: createMetricsRegistry('demo'),
      handler: (_req, res) => sendJson(res, 200, { hello: 'world' }),
    });
    await service.listen(0);
    expect(await (await fetch(`${service.url}/healthz`)).json()).toEqual({ status: 'ok' });
    expect(await (await fetch(`${service.url}/anything`)).json()).toEqual({ hello: 'world' });
    const metrics = await (await fetch(`${service.url}/metrics`)).text();
    expect(metrics).toMatch(/http_request_duration_seconds_count\{service="demo",method="GET",route="\/anything",status_code="200"\} 1/);
    expect(metrics).toContain('nodejs_eventloop_lag_seconds');
  });

  it('turns /readyz to 503 when the database is down, and back when it returns', async () => {
    const database = await freshDatabase();
    let down = false;
    service = createServiceServer({
      service: 'demo',
      logger: silent,
      registry: createMetricsRegistry('demo'),
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
