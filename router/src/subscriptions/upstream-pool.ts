import { type ClientTlsOptions, ErrorCode } from '@ghostpay/platform';
import type { FormattedExecutionResult, GraphQLFormattedError } from 'graphql';
import { type Client, createClient } from 'graphql-ws';
import type { Logger } from 'pino';
import WebSocket from 'ws';

/**
 * Codes with which an upstream refusal ends the shared subscription and its clients; any other
 * failure is retried (resubscribe with backoff), since it may pass.
 */
export const upstreamRefusalCodes: ReadonlySet<string> = new Set([ErrorCode.NOT_FOUND, ErrorCode.FORBIDDEN, ErrorCode.UNAUTHENTICATED]);

/**
 * How charges closes a socket when the token it was opened with expires (graphql-ws Forbidden,
 * reason "Token expired"): expected once per token lifetime per socket, not a failure. Its
 * subscriptions resubscribe on a new socket with a fresh token, as after any drop.
 */
export const upstreamTokenExpiredClose = { code: 4403, reason: 'Token expired' } as const;

/** Receives the events of one shared upstream subscription. */
export interface UpstreamListener {
  /**
   * Something changed upstream. `missedEvents`: the upstream was down or failing since the last
   * event. `final`: this event is the entity's last state (`UpstreamTarget.isFinal`).
   */
  event(missedEvents: boolean, final: boolean): void;
  /**
   * The upstream refused the subscription with one of `upstreamRefusalCodes` (the first such
   * error is `refusal`; `FORBIDDEN` and `UNAUTHENTICATED`, which refuse the router's own service
   * account, arrive as `SERVICE_UNAVAILABLE`): it is over. Every other upstream failure is
   * retried, never reported.
   */
  refused(refusal: GraphQLFormattedError): void;
}

export interface UpstreamTarget {
  subgraph: string;
  key: string;
  query: string;
  variables: Record<string, unknown>;
  /** Whether an event's data is the entity's last state. @default never */
  isFinal?: (data: Record<string, unknown>) => boolean;
}

export interface UpstreamSubscription {
  readonly key: string;
  /** Number of upstream events seen; compared before and after a client's first query. */
  readonly seq: number;
  /** True once the upstream sent its first event (the subscription is established). */
  readonly live: boolean;
  /** True once an event was the entity's last state: no other will come. */
  readonly final: boolean;
}

export interface UpstreamPoolStats {
  /** Sockets carrying at least one subscription. */
  sockets: number;
  connectedSockets: number;
  subscriptions: number;
  /** Subscriptions waiting to subscribe again after a failed or lost attempt. */
  retrying: number;
  /** Subscriptions whose entity reported its last state (`UpstreamTarget.isFinal`). */
  final: number;
}

export interface UpstreamAttachment {
  readonly subscription: UpstreamSubscription;
  detach(): void;
}

export interface UpstreamPoolOptions {
  /** graphql-ws URL per subgraph name, e.g. `{ charges: 'ws://charges:4003/graphql' }`. */
  urls: Readonly<Record<string, string>>;
  /**
   * The router's own credential for upstream sockets (`Bearer …`), read at every (re)connect
   * so a rotated or refreshed token is picked up. Clients' tokens never go upstream.
   */
  authorization: () => string | Promise<string>;
  logger: Logger;
  /** Upstream subscriptions one socket carries before the pool opens another. @default 500 */
  maxSubscriptionsPerSocket?: number;
  /** First reconnect delay; doubles per failed attempt, with jitter. @default 250 */
  retryInitialDelayMs?: number;
  /** @default 10000 */
  retryMaxDelayMs?: number;
  /**
   * graphql-ws ping interval on upstream sockets; a socket whose pong has not arrived one
   * interval after the ping is closed and reconnected (a half-open TCP connection would
   * otherwise deliver nothing, silently). @default 10000
   */
  keepAliveMs?: number;
  /** An idle upstream socket stays open this long for the next subscriber. @default 5000 */
  lazyCloseTimeoutMs?: number;
  /** CA to trust and client certificate to present over wss (mTLS to subgraphs). @default none */
  tls?: ClientTlsOptions;
}

export interface UpstreamPool {
  /** Joins the shared upstream subscription for `target.key`, opening it when it is the first. */
  attach(target: UpstreamTarget, listener: UpstreamListener): UpstreamAttachment;
  /** The current upstream subscription for a key, if any. */
  peek(key: string): UpstreamSubscription | undefined;
  stats(): UpstreamPoolStats;
  close(): Promise<void>;
}

interface Socket {
  id: number;
  subgraph: string;
  /** The pool's logger with this socket's subgraph and id. */
  log: Logger;
  client: Client;
  subscriptions: number;
  /** The subscriptions this socket carries, to mark them when it drops. */
  members: Set<SharedSubscription>;
  connected: boolean;
  failures: number;
}

interface SharedSubscription extends UpstreamSubscription {
  key: string;
  seq: number;
  live: boolean;
  final: boolean;
  missed: boolean;
  closed: boolean;
  target: UpstreamTarget;
  socket: Socket;
  listeners: Set<UpstreamListener>;
  /** Attempts in a row that the upstream answered with a failure (errors, or a `complete`); sets the backoff. */
  failures: number;
  dispose?: () => void;
  retryTimer?: NodeJS.Timeout;
}

/**
 * Upstream graphql-ws sockets shared by every client of this router process.
 *
 * One upstream subscription per distinct (field, arguments) — e.g. per charge id — however
 * many clients watch it, multiplexed over few sockets per subgraph (a new socket only every
 * `maxSubscriptionsPerSocket` subscriptions). Reconnection is ours, not graphql-ws's: a
 * dropped socket (killed replica, 4403 after a credential rotation or when the socket's token
 * expires — {@link upstreamTokenExpiredClose}, logged at info —, network) makes each of
 * its subscriptions resubscribe after an exponential backoff with jitter, and marks it
 * `missed` so the next event tells clients that events may have been missed.
 *
 * The upstream failing a subscription it accepted is handled the same way. graphql-ws delivers
 * a subscribe-time failure of the subgraph's resolver (charges restarting before its database
 * is reachable) as a `next` with `errors` and no `data`, then `complete`: such a payload is no
 * event, and a `complete` is never the end of a stream that has no last event. Both resubscribe
 * with backoff, keeping `missed` set. Only a refusal (`upstreamRefusalCodes`) ends the clients,
 * with its code; they are never ended with a bare `complete`.
 */
export function createUpstreamPool(options: UpstreamPoolOptions): UpstreamPool {
  const tls = options.tls;
  // graphql-ws constructs the socket itself (url, protocol): bind the TLS options to the class.
  const SocketImpl = tls
    ? class TlsWebSocket extends WebSocket {
        constructor(address: string | URL, protocols?: string | string[]) {
          super(address, protocols, { ...tls });
        }
      }
    : WebSocket;
  const maxPerSocket = options.maxSubscriptionsPerSocket ?? 500;
  const initialDelay = options.retryInitialDelayMs ?? 250;
  const maxDelay = options.retryMaxDelayMs ?? 10_000;
  const sockets = new Map<string, Socket[]>();
  const subscriptions = new Map<string, SharedSubscription>();
  let nextSocketId = 1;
  let closed = false;

  const openSocket = (subgraph: string): Socket => {
    const url = options.urls[subgraph];
    if (!url) throw new Error(`No upstream URL for subgraph ${subgraph}`);
    const id = nextSocketId++;
    const log = options.logger.child({ subgraph, upstreamSocket: id });
    const keepAliveMs = options.keepAliveMs ?? 10_000;
    let pongTimer: NodeJS.Timeout | undefined;
    let activeSocket: WebSocket | undefined;
    const socket: Socket = {
      id,
      subgraph,
      log,
      subscriptions: 0,
      members: new Set(),
      connected: false,
      failures: 0,
      client: createClient({
        url,
        webSocketImpl: SocketImpl,
        lazy: true,
        lazyCloseTimeout: options.lazyCloseTimeoutMs ?? 5_000,
        keepAlive: keepAliveMs,
        retryAttempts: 0,
        connectionParams: async () => ({ authorization: await options.authorization() }),
        on: {
          connected: (ws) => {
            activeSocket = ws as WebSocket;
            socket.connected = true;
            socket.failures = 0;
            log.debug('upstream socket connected');
          },
          ping: (received) => {
            if (received) return;
            clearTimeout(pongTimer);
            pongTimer = setTimeout(() => {
              log.warn('upstream pong timeout: closing the socket to reconnect');
              if (activeSocket?.readyState === WebSocket.OPEN) activeSocket.close(4408, 'Pong timeout');
            }, keepAliveMs);
            pongTimer.unref();
          },
          pong: (received) => {
            if (received) clearTimeout(pongTimer);
          },
          closed: (event) => {
            clearTimeout(pongTimer);
            activeSocket = undefined;
            const wasConnected = socket.connected;
            socket.connected = false;
            // Whatever graphql-ws does next (our resubscribe, or its own retry after a 1000),
            // events may have been lost while the socket was gone. That holds even for a
            // subscription whose upstream never went live: its clients already hold the state
            // of their subscribe-time query, and changes since then were not seen.
            for (const sub of socket.members) {
              sub.missed = true;
              sub.live = false;
            }
            if (socket.subscriptions > 0) {
              const { code, reason } = event as { code?: number; reason?: unknown };
              if (code === upstreamTokenExpiredClose.code && String(reason) === upstreamTokenExpiredClose.reason) {
                // Not a failure: the backoff does not grow, and it is no warning.
                log.info({ code, subscriptions: socket.subscriptions }, 'upstream token expired: reconnecting with a fresh one');
              } else {
                socket.failures++;
                log.warn({ code, wasConnected }, 'upstream socket closed with active subscriptions');
              }
            }
          },
        },
      }),
    };
    return socket;
  };

  const socketFor = (subgraph: string): Socket => {
    const list = sockets.get(subgraph) ?? [];
    sockets.set(subgraph, list);
    const roomy = list.filter((s) => s.subscriptions < maxPerSocket).sort((a, b) => b.subscriptions - a.subscriptions)[0];
    if (roomy) return roomy;
    const socket = openSocket(subgraph);
    list.push(socket);
    return socket;
  };

  /** Exponential in `failures` (1 → the initial delay), capped, with jitter over its upper half. */
  const retryDelay = (failures: number) => {
    const base = Math.min(maxDelay, initialDelay * 2 ** Math.max(0, failures - 1));
    return Math.round(base / 2 + Math.random() * (base / 2));
  };

  const remove = (sub: SharedSubscription, reason: string) => {
    if (sub.closed) return;
    sub.socket.log.debug({ key: sub.key, reason }, 'upstream subscription removed');
    sub.closed = true;
    clearTimeout(sub.retryTimer);
    subscriptions.delete(sub.key);
    sub.socket.subscriptions--;
    sub.socket.members.delete(sub);
    sub.dispose?.();
    if (sub.socket.subscriptions === 0) {
      const list = sockets.get(sub.socket.subgraph) ?? [];
      // Keep one idle client per subgraph (its socket closes lazily); drop extra ones.
      if (list.length > 1) {
        sockets.set(
          sub.socket.subgraph,
          list.filter((s) => s !== sub.socket),
        );
        void sub.socket.client.dispose();
      }
    }
  };

  /** Ends this attempt and subscribes again after `delay`; clients are told events may have been missed. */
  const resubscribe = (sub: SharedSubscription, delay: number) => {
    sub.missed = true;
    sub.live = false;
    // Release this attempt (graphql-ws keeps its lock on the client after a transport error, and
    // would otherwise never lazily close the socket once every subscription has left).
    sub.dispose?.();
    sub.dispose = undefined;
    clearTimeout(sub.retryTimer);
    sub.retryTimer = setTimeout(() => {
      sub.retryTimer = undefined;
      run(sub);
    }, delay);
  };

  const run = (sub: SharedSubscription) => {
    if (sub.closed || closed) return;
    sub.socket.log.debug({ key: sub.key }, 'upstream subscribe');
    // Callbacks of an attempt that already failed (graphql-ws still calls `complete` after we
    // released it) are ignored.
    let over = false;
    let events = 0;
    /** The upstream answered this attempt with a failure: refuse the clients, or retry. */
    const failed = (errors: readonly GraphQLFormattedError[], how: string) => {
      over = true;
      const refusal = errors.find((e) => upstreamRefusalCodes.has(String(e.extensions?.code)));
      if (refusal) {
        const code = String(refusal.extensions?.code);
        // The client's own access was checked before the upstream was asked (a NOT_FOUND here is
        // the charge itself). FORBIDDEN or UNAUTHENTICATED answer the router's service account:
        // the router is misconfigured, which the client is told as the outage it is.
        const misconfigured = code === ErrorCode.FORBIDDEN || code === ErrorCode.UNAUTHENTICATED;
        if (misconfigured) {
          sub.socket.log.error(
            { key: sub.key, code },
            "upstream refused the router's subscription account (missing charges:read, revoked key?): ending its clients",
          );
        } else {
          sub.socket.log.warn({ key: sub.key, code }, 'upstream refused the subscription: ending its clients');
        }
        const told: GraphQLFormattedError = misconfigured
          ? { message: 'The live event source is unavailable', extensions: { code: ErrorCode.SERVICE_UNAVAILABLE } }
          : refusal;
        const listeners = [...sub.listeners];
        remove(sub, 'refused');
        for (const listener of listeners) listener.refused(told);
        return;
      }
      // An attempt that delivered a change beyond the state sent on subscribe proved the
      // upstream works: start the backoff over. (Resetting on that first event would retry an
      // upstream that answers every subscribe with one event and a `complete` at full speed.)
      if (events > 1) sub.failures = 0;
      sub.failures++;
      const delay = retryDelay(sub.failures);
      sub.socket.log.warn(
        { key: sub.key, failures: sub.failures, delayMs: delay, how, codes: errors.map((e) => e.extensions?.code ?? null) },
        'upstream subscription failed: resubscribing',
      );
      resubscribe(sub, delay);
    };
    sub.dispose = sub.socket.client.subscribe(
      { query: sub.target.query, variables: sub.target.variables },
      {
        next: (payload: FormattedExecutionResult) => {
          if (sub.closed || over) return;
          if (payload.data == null) {
            failed(payload.errors ?? [], 'errors');
            return;
          }
          events++;
          const missed = sub.missed;
          sub.missed = false;
          sub.live = true;
          sub.seq++;
          // A state no change leaves stays final, whatever the upstream sends after (a resubscribe).
          if (!sub.final && sub.target.isFinal?.(payload.data)) sub.final = true;
          for (const listener of [...sub.listeners]) listener.event(missed, sub.final);
        },
        error: (error: unknown) => {
          if (sub.closed || over) return;
          // graphql-ws `error` message: the upstream refused the operation itself.
          if (Array.isArray(error)) {
            failed(error as GraphQLFormattedError[], 'error message');
            return;
          }
          // Transport failure: the socket went away. Resubscribe on a fresh connection.
          over = true;
          if (sub.socket.failures === 0) sub.socket.failures = 1;
          const delay = retryDelay(sub.socket.failures);
          sub.socket.log.info(
            { key: sub.key, failures: sub.socket.failures, delayMs: delay, reason: describe(error) },
            'upstream subscription lost: resubscribing',
          );
          resubscribe(sub, delay);
        },
        complete: () => {
          if (sub.closed || over) return;
          // chargeUpdated has no last event: an upstream `complete` means it gave up on this one.
          failed([], 'complete');
        },
      },
    );
  };

  return {
    attach(target, listener) {
      if (closed) throw new Error('upstream pool is closed');
      let sub = subscriptions.get(target.key);
      if (!sub) {
        const socket = socketFor(target.subgraph);
        socket.subscriptions++;
        sub = {
          key: target.key,
          seq: 0,
          live: false,
          final: false,
          missed: false,
          closed: false,
          target,
          socket,
          listeners: new Set(),
          failures: 0,
        };
        subscriptions.set(target.key, sub);
        socket.members.add(sub);
        run(sub);
      }
      const shared = sub;
      shared.listeners.add(listener);
      return {
        subscription: shared,
        detach() {
          shared.listeners.delete(listener);
          if (shared.listeners.size === 0) remove(shared, 'detached');
        },
      };
    },
    peek(key) {
      return subscriptions.get(key);
    },
    stats() {
      const all = [...sockets.values()].flat();
      return {
        sockets: all.filter((s) => s.subscriptions > 0).length,
        connectedSockets: all.filter((s) => s.connected).length,
        subscriptions: subscriptions.size,
        retrying: [...subscriptions.values()].filter((s) => s.retryTimer !== undefined).length,
        final: [...subscriptions.values()].filter((s) => s.final).length,
      };
    },
    async close() {
      closed = true;
      for (const sub of [...subscriptions.values()]) remove(sub, 'pool closed');
      await Promise.all([...sockets.values()].flat().map((s) => s.client.dispose()));
      sockets.clear();
    },
  };
}

/** A close event's code and reason, or an error's message, for logs. */
function describe(error: unknown): string {
  if (error && typeof error === 'object') {
    const e = error as { code?: unknown; reason?: unknown; message?: unknown; type?: unknown };
    if (typeof e.code === 'number') return `close ${e.code}${e.reason ? ` ${String(e.reason)}` : ''}`;
    if (typeof e.message === 'string') return e.message;
    if (typeof e.type === 'string') return e.type;
  }
  return String(error);
}
