import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { connect } from 'node:net';
import { createSecretsProvider } from '@ghostpay/platform';
import { capturingLogger, createTestTokenIssuer } from '@ghostpay/test-support';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { type AnalyticsService, createAnalyticsService } from '../src/index.ts';
import { backends } from './backends.ts';

const embedded = backends.find((backend) => backend.name === 'embedded');
if (!embedded) throw new Error('no embedded backend');

let service: AnalyticsService | undefined;
let cleanup: (() => Promise<void>) | undefined;
afterEach(async () => {
  await service?.close();
  await cleanup?.();
  service = undefined;
  cleanup = undefined;
});

describe('ingest when the emitter leaves mid-batch', () => {
  it('drops the batch with a debug line and sends no answer, not a 400 "Body is not valid JSON"', async () => {
    const token = randomBytes(32).toString('base64url');
    const opened = await embedded.open();
    cleanup = opened.cleanup;
    const log = capturingLogger('analytics', { level: 'debug' });
    service = createAnalyticsService({
      store: opened.store,
      secrets: createSecretsProvider({ env: { GHOSTPAY_SECRET_ANALYTICS_INGEST_TOKEN: token } }),
      logger: log.logger,
      verifier: (await createTestTokenIssuer()).verifier,
      config: { ANALYTICS_LOG_RETENTION_DAYS: 30, ANALYTICS_INGEST_MAX_EVENTS: 1000, ANALYTICS_INGEST_MAX_BYTES: 4 * 1024 * 1024 },
    });
    const url = await service.start(0);

    const socket = connect(Number(new URL(url).port), '127.0.0.1');
    await once(socket, 'connect');
    socket.on('error', () => {});
    socket.write(
      `POST /internal/events HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${token}\r\ncontent-type: application/json\r\ncontent-length: 5000\r\n\r\n{"events":[`,
    );
    // The handler is reading the body once the token was checked: wait for the request to be in flight.
    await vi.waitFor(async () => {
      const metrics = await (await fetch(`${url}/metrics`)).text();
      expect(metrics).toMatch(/http_open_connections\S* [2-9]/);
    });
    socket.destroy();

    await vi.waitFor(async () => {
      const metrics = await (await fetch(`${url}/metrics`)).text();
      // Counted as the client's 499 (closed before any answer), never as a 400 it never saw.
      expect(metrics).toMatch(/http_request_duration_seconds_count\{[^}]*route="\/internal\/events"[^}]*status_code="499"[^}]*\} 1/);
      expect(metrics).not.toMatch(/route="\/internal\/events"[^}]*status_code="400"/);
    });
    const dropped = 'ingest connection closed before the batch was complete; batch dropped';
    expect(log.parsed().find((line) => line.msg === dropped)).toMatchObject({ level: 20 });
    expect(log.parsed<{ level: number }>().filter((line) => line.level >= 40)).toEqual([]);
  });
});
