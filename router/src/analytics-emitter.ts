import { randomUUID } from 'node:crypto';
import { type ClientTlsOptions, type Logger, type RequestEvent, redactRequestEvent } from '@ghostpay/platform';
import { Counter, Gauge, type Registry } from 'prom-client';
import { Agent, fetch as undiciFetch } from 'undici';

export type { RequestEvent };

export interface AnalyticsEmitterOptions {
  /** The analytics ingest endpoint, e.g. `http://127.0.0.1:4004/internal/events`. */
  url: string;
  /**
   * The shared ingest token (secret `analytics-ingest-token`), read before every delivery so a
   * rotated secret file is picked up. Undefined → the batch is kept and retried later.
   */
  token: () => string | undefined;
  /** Events held while analytics is slow or down; past it the oldest are dropped. @default 10000 */
  maxBufferSize?: number;
  /** Events per POST; a full batch is sent without waiting for the interval. @default 200 */
  batchSize?: number;
  /** How often a partial batch is sent. @default 1000 */
  flushIntervalMs?: number;
  /** First retry delay after a failed delivery; doubles per failure, with jitter. @default 250 */
  retryBaseMs?: number;
  /** Longest retry delay. @default 30000 */
  retryMaxMs?: number;
  /** Per-POST timeout. @default 5000 */
  requestTimeoutMs?: number;
  /** Registers `analytics_events_sent_total`, `analytics_events_dropped_total` and a buffer gauge. */
  registry?: Registry;
  logger?: Logger;
  /** The fetch implementation. @default globalThis.fetch */
  fetch?: typeof globalThis.fetch;
}

/**
 * A `fetch` that presents `tls` (the router's client certificate and internal CA, as towards the
 * subgraphs) to an analytics service demanding client certificates; `globalThis.fetch` when
 * `tls` is undefined. Its keep-alive pool lives as long as the process.
 */
export function tlsFetch(tls: ClientTlsOptions | undefined): typeof globalThis.fetch {
  if (!tls) return globalThis.fetch;
  const dispatcher = new Agent({ connect: tls });
  return ((input: string | URL, init?: RequestInit) =>
    undiciFetch(input, { ...(init as Parameters<typeof undiciFetch>[1]), dispatcher })) as unknown as typeof globalThis.fetch;
}

export interface AnalyticsEmitterMetrics {
  /** Events the analytics service acknowledged. */
  readonly sent: number;
  /** Events dropped: buffer overflow (oldest first), rejected batches, or emitted after close. */
  readonly dropped: number;
  /** Events waiting in the buffer (not counting a batch in flight). */
  readonly buffered: number;
  /** Failed delivery attempts so far. */
  readonly failedAttempts: number;
}

export interface AnalyticsEmitter {
  /**
   * Queues an event. Synchronous and O(1): it stores a reference in a ring buffer (overwriting
   * the oldest when full) and returns; redaction, serialisation and I/O happen later, off the
   * request path. Never throws.
   */
  emit(event: RequestEvent): void;
  /** Sends everything buffered now, one attempt per batch. Resolves (never rejects) when done or on the first failure. */
  flush(): Promise<void>;
  /** Stops the timer, makes one last flush bounded by `requestTimeoutMs`; later emits are dropped. */
  close(): Promise<void>;
  readonly metrics: AnalyticsEmitterMetrics;
}

/** A fixed-capacity FIFO over an array: push and shift are O(1), and a push when full overwrites the oldest. */
class RingBuffer<T> {
  private readonly items: (T | undefined)[];
  private head = 0;
  size = 0;
  readonly capacity: number;
  constructor(capacity: number) {
    this.capacity = capacity;
    this.items = new Array(capacity);
  }
  /** Adds at the tail; returns true when the oldest item was overwritten to make room. */
  push(item: T): boolean {
    if (this.size === this.capacity) {
      this.items[this.head] = item;
      this.head = (this.head + 1) % this.capacity;
      return true;
    }
    this.items[(this.head + this.size) % this.capacity] = item;
    this.size++;
    return false;
  }
  shift(): T | undefined {
    if (this.size === 0) return undefined;
    const item = this.items[this.head];
    this.items[this.head] = undefined;
    this.head = (this.head + 1) % this.capacity;
    this.size--;
    return item;
  }
  /** Puts items back at the head (they are older than everything buffered); returns how many did not fit. */
  unshiftAll(batch: T[]): number {
    const room = this.capacity - this.size;
    // The batch is the oldest data: when it does not all fit, its oldest part is what is dropped.
    const keep = batch.slice(Math.max(0, batch.length - room));
    for (let i = keep.length - 1; i >= 0; i--) {
      this.head = (this.head - 1 + this.capacity) % this.capacity;
      this.items[this.head] = keep[i];
      this.size++;
    }
    return batch.length - keep.length;
  }
}

/** A buffered event: raw until its first delivery attempt, then redacted with an eventId that stays across retries. */
type Pending = { raw: RequestEvent } | { ready: RequestEvent };

/**
 * Ships request events to the analytics service in batches. The router calls `emit` from its
 * `onRequestEvent` hook; analytics being slow, down or misconfigured never slows or fails a
 * request: the buffer is bounded, delivery runs on timers, and every failure is counted and
 * logged instead of thrown.
 */
export function createAnalyticsEmitter(options: AnalyticsEmitterOptions): AnalyticsEmitter {
  const {
    url,
    token,
    maxBufferSize = 10_000,
    batchSize = 200,
    flushIntervalMs = 1_000,
    retryBaseMs = 250,
    retryMaxMs = 30_000,
    requestTimeoutMs = 5_000,
    registry,
    logger,
  } = options;
  const fetchImpl = options.fetch ?? globalThis.fetch;
  const buffer = new RingBuffer<Pending>(Math.max(1, maxBufferSize));
  const counts = { sent: 0, dropped: 0, failedAttempts: 0 };

  const sentCounter = registry
    ? new Counter({ name: 'analytics_events_sent_total', help: 'Request events delivered to the analytics service', registers: [registry] })
    : undefined;
  const droppedCounter = registry
    ? new Counter({
        name: 'analytics_events_dropped_total',
        help: 'Request events dropped (buffer full, batch rejected, or emitted after close)',
        registers: [registry],
      })
    : undefined;
  if (registry) {
    new Gauge({
      name: 'analytics_events_buffered',
      help: 'Request events waiting to be delivered to the analytics service',
      registers: [registry],
      collect() {
        this.set(buffer.size);
      },
    });
  }

  const countDropped = (n: number) => {
    if (n <= 0) return;
    counts.dropped += n;
    droppedCounter?.inc(n);
  };

  let closed = false;
  let sending: Promise<boolean> | undefined;
  let consecutiveFailures = 0;
  let retryAt = 0;
  let kickScheduled = false;

  const takeBatch = (): RequestEvent[] => {
    const batch: RequestEvent[] = [];
    while (batch.length < batchSize) {
      const item = buffer.shift();
      if (!item) break;
      if ('ready' in item) batch.push(item.ready);
      else {
        try {
          batch.push({ ...redactRequestEvent(item.raw), eventId: randomUUID() });
        } catch {
          // A malformed event (not an object): drop it rather than poison the batch.
          countDropped(1);
        }
      }
    }
    return batch;
  };

  /** One delivery attempt for one batch. Resolves true on success; never rejects. */
  const sendOne = async (): Promise<boolean> => {
    const batch = takeBatch();
    if (batch.length === 0) return true;
    let outcome: 'sent' | 'retry' | 'reject' = 'retry';
    try {
      const current = token();
      if (!current) throw new Error('analytics-ingest-token is not available');
      const response = await fetchImpl(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${current}` },
        body: JSON.stringify({ events: batch }),
        signal: AbortSignal.timeout(requestTimeoutMs),
      });
      // Drain the body so the keep-alive connection is reused.
      await response.arrayBuffer().catch(() => undefined);
      if (response.ok) outcome = 'sent';
      // 400/413/422: the same bytes would fail again; 401/403/5xx/429 may heal (token rotation, restart).
      else if ([400, 413, 422].includes(response.status)) outcome = 'reject';
      else throw new Error(`analytics ingest answered ${response.status}`);
    } catch (error) {
      counts.failedAttempts++;
      consecutiveFailures++;
      const delay = Math.min(retryMaxMs, retryBaseMs * 2 ** Math.min(consecutiveFailures - 1, 20));
      // Equal jitter (half fixed, half random) keeps router replicas from retrying in lockstep after an analytics restart.
      retryAt = Date.now() + delay / 2 + Math.random() * (delay / 2);
      countDropped(buffer.unshiftAll(batch.map((ready) => ({ ready }))));
      logger?.warn(
        { err: (error as Error).message, events: batch.length, retryInMs: Math.round(retryAt - Date.now()) },
        'analytics delivery failed',
      );
      return false;
    }
    consecutiveFailures = 0;
    retryAt = 0;
    if (outcome === 'sent') {
      counts.sent += batch.length;
      sentCounter?.inc(batch.length);
    } else {
      countDropped(batch.length);
      logger?.error({ events: batch.length }, 'analytics ingest rejected a batch; dropped');
    }
    return true;
  };

  /** Sends batches while there are full ones (or `all`), one request in flight at a time. */
  const drain = (all: boolean): Promise<boolean> => {
    if (sending) return sending;
    sending = (async () => {
      try {
        while (buffer.size > 0 && (all || buffer.size >= batchSize)) {
          if (!(await sendOne())) return false;
        }
        return true;
      } finally {
        sending = undefined;
      }
    })();
    return sending;
  };

  const tick = () => {
    if (closed || buffer.size === 0 || Date.now() < retryAt) return;
    void drain(true);
  };
  const timer = setInterval(tick, flushIntervalMs);
  timer.unref();

  const kick = () => {
    kickScheduled = false;
    if (!closed && Date.now() >= retryAt) void drain(false);
  };

  const flush = async (): Promise<void> => {
    if (sending) await sending;
    while (buffer.size > 0) {
      if (!(await drain(true))) return;
    }
  };

  // No method uses `this`: `emitter.emit` and `emitter.close` can be passed around detached.
  return {
    emit(event) {
      try {
        if (closed) {
          countDropped(1);
          return;
        }
        if (buffer.push({ raw: event })) countDropped(1);
        // A full batch goes out on the next turn of the event loop, never inside the caller's call.
        if (buffer.size >= batchSize && !kickScheduled && !sending) {
          kickScheduled = true;
          setImmediate(kick).unref();
        }
      } catch {
        // emit must never throw into the request path.
      }
    },
    flush,
    async close() {
      if (closed) return;
      closed = true;
      clearInterval(timer);
      await Promise.race([flush(), new Promise((resolve) => setTimeout(resolve, requestTimeoutMs).unref())]);
      if (buffer.size > 0) {
        logger?.warn({ events: buffer.size }, 'analytics emitter closed with undelivered events');
        countDropped(buffer.size);
        while (buffer.shift()) {}
      }
    },
    metrics: {
      get sent() {
        return counts.sent;
      },
      get dropped() {
        return counts.dropped;
      },
      get buffered() {
        return buffer.size;
      },
      get failedAttempts() {
        return counts.failedAttempts;
      },
    },
  };
}
