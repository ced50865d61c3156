import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { acquireProcessLock, type ProcessLock } from '@ghostpay/platform/process-lock';
import { drizzle as drizzlePg } from 'drizzle-orm/node-postgres';
import type { PgDatabase, PgQueryResultHKT } from 'drizzle-orm/pg-core';
import { drizzle as drizzlePglite } from 'drizzle-orm/pglite';
import pg from 'pg';
import { defaultPreparedStatementsPerConnection, preparingClient } from './prepared-statements.ts';
import * as schema from './schema/index.ts';

export type Schema = typeof schema;
/** The drizzle database both drivers give; repositories are written against this. */
export type Database = PgDatabase<PgQueryResultHKT, Schema>;
export type Transaction = Parameters<Parameters<Database['transaction']>[0]>[0];

export interface DatabaseOptions {
  /** A postgres:// URL: use a pg Pool. Without it, PGlite. */
  url?: string;
  /** PGlite data directory; in memory when absent. Ignored with `url`. */
  dataDir?: string;
  /** pg pool size. @default 10 */
  poolSize?: number;
  /** Shown in pg_stat_activity. */
  applicationName?: string;
  /** Pool acquire timeout in ms. @default 5000 */
  connectionTimeoutMs?: number;
  /** Per-statement timeout in ms (pg only). @default 15000 */
  statementTimeoutMs?: number;
  /**
   * How long a pg connection may sit idle inside an open transaction before PostgreSQL ends its
   * session (`idle_in_transaction_session_timeout`), rolling the transaction back and releasing
   * its row locks: a process that hangs, or is cut off, between two statements of a transaction
   * would otherwise keep a card's or a charge's row locked for as long. 0 turns it off.
   * @default 30000
   */
  idleInTransactionTimeoutMs?: number;
  /**
   * How long one statement of a pg connection may stay outstanding before the connection is
   * given up as lost (pg only; checked every quarter of it, at most every second): its socket is
   * destroyed, every statement on it fails, and the pool replaces it. A live server answers or cancels every statement within `statementTimeoutMs`;
   * one that vanished without a reset (a failover, a partition, a NAT or load balancer that forgot
   * the connection) answers nothing, and the statement would wait until the OS gives up on the
   * socket, about 15 minutes. 0 turns it off. @default statementTimeoutMs + 5000 (0 when that is 0)
   */
  responseTimeoutMs?: number;
  /**
   * Distinct parameterized statements each pg connection keeps prepared (see
   * `preparingClient`); 0 prepares none. Ignored by PGlite. @default 100
   */
  preparedStatements?: number;
  /**
   * How often a LISTEN connection proves it is alive (pg only): it runs `select 1` this often,
   * and one unanswered for as long is a lost connection, reconnected (then `onReconnect`). A
   * connection dropped without a reset (a NAT or load balancer's idle timeout, a failover)
   * raises no error of its own: without this, its notifications would stop unnoticed.
   * @default 15000
   */
  listenHeartbeatMs?: number;
}

export type NotificationListener = (payload: string) => void;

export interface DatabaseHandle {
  readonly db: Database;
  readonly kind: 'pg' | 'pglite';
  /** The pg pool (production mode), for tools such as the benchmark. */
  readonly pool?: pg.Pool;
  readonly pglite?: PGlite;
  /** Resolves when the database answers `select 1`. */
  ping(): Promise<void>;
  /**
   * Subscribes to a NOTIFY channel. `onReconnect` is called after a lost LISTEN connection
   * came back: notifications may have been missed in between.
   */
  listen(channel: string, listener: NotificationListener, onReconnect?: () => void): Promise<() => Promise<void>>;
  /**
   * Closes the database: its LISTEN connections, then the pool. pg's `pool.end()` closes idle
   * connections at once but waits for every checked-out one to be released, which a statement
   * still running (up to `statementTimeoutMs`, or `responseTimeoutMs` on a silent server) or a
   * transaction whose holder never finishes would stretch past any shutdown deadline. So after
   * `timeoutMs` (the time left of the caller's shutdown deadline; @default
   * {@link defaultCloseTimeoutMs}) the connections still checked out are closed under their
   * holders: their statements fail, PostgreSQL rolls back a transaction left open (nothing half
   * written), and `close` resolves within about a second more. A statement that commits on its
   * own, or a `COMMIT`, already running on the server may still commit although its holder saw
   * it fail (as after any lost connection): callers retry idempotently. PGlite closes at once.
   */
  close(options?: { timeoutMs?: number }): Promise<void>;
}

/**
 * How long `close()` waits for checked-out pg connections unless told otherwise: short enough
 * that a service closing its database after its own drain (`SHUTDOWN_TIMEOUT_MS`) stays within
 * the 5 s the chart's termination grace period allows past that drain.
 */
export const defaultCloseTimeoutMs = 2_000;

const channelPattern = /^[a-z_][a-z0-9_]{0,62}$/;

/**
 * Where a service keeps its PGlite database under `GHOSTPAY_DATA_DIR`: `<dir>/pglite`, one
 * layout for `npm start`, every standalone service and the CLIs, so each of them opens the
 * database the others wrote.
 */
export function embeddedDatabaseDir(dataDir: string): string {
  return join(dataDir, 'pglite');
}

export async function createDatabase(options: DatabaseOptions = {}): Promise<DatabaseHandle> {
  return options.url ? createPgDatabase(options.url, options) : createPgliteDatabase(options.dataDir);
}

/** Why an embedded database could not be opened: another process (or this one) has it open. */
export class EmbeddedDatabaseInUseError extends Error {
  readonly pid: number;
  constructor(dataDir: string, pid: number) {
    super(
      `${dataDir} is open in another process (${pid}${pid === process.pid ? ', this one' : ''}): PGlite allows one process per data ` +
        'directory. Stop it first (npm start, a service or a CLI on the same GHOSTPAY_DATA_DIR), or point DATABASE_URL at PostgreSQL ' +
        `to run several. If no such process runs, delete ${dataDir}.lock.`,
    );
    this.name = 'EmbeddedDatabaseInUseError';
    this.pid = pid;
  }
}

/**
 * PGlite on `dataDir` (in memory without one). A data directory is locked for the process while
 * the handle is open (`<dataDir>.lock`, `acquireProcessLock`): PGlite is PostgreSQL in one
 * process, and a second process on the same files (a CLI, a standalone service, a second
 * `npm start`) keeps its own buffers and WAL position and corrupts them. It is refused with
 * `EmbeddedDatabaseInUseError` instead.
 */
async function createPgliteDatabase(dataDir: string | undefined): Promise<DatabaseHandle> {
  let lock: ProcessLock | undefined;
  if (dataDir) {
    mkdirSync(dataDir, { recursive: true });
    const path = resolve(dataDir);
    lock = acquireProcessLock(`${path}.lock`, (holderPid) => new EmbeddedDatabaseInUseError(path, holderPid));
  }
  let client: PGlite;
  try {
    client = new PGlite(dataDir);
    await client.waitReady;
  } catch (error) {
    lock?.release();
    throw error;
  }
  const db = drizzlePglite(client, { schema }) as unknown as Database;
  return {
    db,
    kind: 'pglite',
    pglite: client,
    async ping() {
      await client.query('select 1');
    },
    async listen(channel, listener) {
      if (!channelPattern.test(channel)) throw new Error(`invalid channel ${channel}`);
      const unsubscribe = await client.listen(channel, listener);
      return async () => unsubscribe();
    },
    async close() {
      try {
        if (!client.closed) await client.close();
      } finally {
        lock?.release();
      }
    },
  };
}

/** URL parameters by which an operator says how to use TLS; pg reads them from the URL itself. */
const tlsParameters = ['ssl', 'sslmode', 'sslcert', 'sslkey', 'sslrootcert', 'sslnegotiation', 'uselibpqcompat'];

/**
 * The TLS setting for a PostgreSQL URL that says nothing about TLS (no `sslmode`, `ssl`,
 * `sslrootcert`, … and no `PGSSLMODE`): verified TLS (the certificate's chain against Node's CA
 * store, and its name against the host) for any host but this machine's (a loopback address,
 * `localhost`, a Unix socket), where it is left off. pg alone would connect to a remote server in
 * plain text, sending the password (unless SCRAM) and every row (card and charge data, key
 * hashes) readable and alterable by anyone on the path. `sslmode=disable` opts out,
 * `sslrootcert=<file>` trusts a private CA (pg 8 verifies the host name for `require` and
 * `verify-ca` too); `undefined` leaves the URL (or `PGSSLMODE`) in charge.
 */
export function defaultTls(url: string): true | undefined {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return undefined;
  }
  if (process.env.PGSSLMODE || tlsParameters.some((name) => parsed.searchParams.has(name))) return undefined;
  const host = decodeURIComponent(parsed.searchParams.get('host') ?? parsed.hostname).replace(/^\[(.*)\]$/, '$1');
  const local = host === '' || host.startsWith('/') || host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
  return local ? undefined : true;
}

async function createPgDatabase(url: string, options: DatabaseOptions): Promise<DatabaseHandle> {
  const ssl = defaultTls(url);
  const statementTimeoutMs = options.statementTimeoutMs ?? 15_000;
  const responseTimeoutMs = options.responseTimeoutMs ?? (statementTimeoutMs > 0 ? statementTimeoutMs + 5_000 : 0);
  const pool = new pg.Pool({
    ...(ssl ? { ssl } : {}),
    Client: watchedClient(preparingClient(options.preparedStatements ?? defaultPreparedStatementsPerConnection), responseTimeoutMs),
    connectionString: url,
    max: options.poolSize ?? 10,
    application_name: options.applicationName ?? 'ghostpay',
    connectionTimeoutMillis: options.connectionTimeoutMs ?? 5_000,
    // The OS probes an idle connection, so one whose peer vanished is closed rather than kept.
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000,
    statement_timeout: statementTimeoutMs,
    idle_in_transaction_session_timeout: options.idleInTransactionTimeoutMs ?? 30_000,
    idleTimeoutMillis: 30_000,
  });
  // A pool error (e.g. the server restarted) must not crash the process; the next query reconnects.
  pool.on('error', () => {});
  // pg-pool listens for errors only on idle clients. A checked-out client (inside a transaction,
  // between two statements) whose backend is terminated or whose server crashes emits 'error'
  // with no listener, which kills the process. The failure still reaches the caller through the
  // next query on that client, and the pool discards the broken client on release.
  // Every connection the pool holds, idle or checked out, for `close` past its deadline.
  // (Each is a pg.Client: the pool's type hides `end`, which `Client` has.)
  const connections = new Set<pg.Client>();
  pool.on('connect', (client) => {
    client.on('error', () => {});
    connections.add(client as unknown as pg.Client);
  });
  pool.on('remove', (client) => connections.delete(client as unknown as pg.Client));
  const db = drizzlePg(pool, { schema }) as unknown as Database;
  const listeners = new Set<() => Promise<void>>();
  return {
    db,
    kind: 'pg',
    pool,
    async ping() {
      await pool.query('select 1');
    },
    async listen(channel, listener, onReconnect) {
      if (!channelPattern.test(channel)) throw new Error(`invalid channel ${channel}`);
      const listenerHandle = createReconnectingListener(url, ssl, channel, listener, onReconnect, options.listenHeartbeatMs ?? 15_000);
      await listenerHandle.ready;
      listeners.add(listenerHandle.stop);
      return async () => {
        listeners.delete(listenerHandle.stop);
        await listenerHandle.stop();
      };
    },
    async close(closeOptions = {}) {
      const timeoutMs = closeOptions.timeoutMs ?? defaultCloseTimeoutMs;
      const deadline = Date.now() + timeoutMs;
      await Promise.all([...listeners].map((stop) => stop()));
      await endPoolBy(pool, connections, deadline);
    },
  };
}

/**
 * `pool.end()`, waiting for checked-out connections until `deadline` (a `Date.now()` time) only:
 * then each is ended under its holder (pg's `Client.end()` destroys the socket of one running a
 * statement, which fails it, and ends the session of one idle in a transaction; the server rolls
 * back either's transaction, the holder's release removes it), and the pool is given another
 * second to see them released; a holder that never releases is not waited for past it.
 */
async function endPoolBy(pool: pg.Pool, connections: ReadonlySet<pg.Client>, deadline: number): Promise<void> {
  const ended = pool.end();
  let timer: NodeJS.Timeout | undefined;
  const wait = (ms: number) => new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), Math.max(0, ms))));
  try {
    if ((await Promise.race([ended, wait(deadline - Date.now())])) !== 'late') return;
    clearTimeout(timer);
    // The idle ones are gone by now: what is left is checked out.
    for (const client of connections) client.end().catch(() => {});
    await Promise.race([ended, wait(1_000)]);
  } finally {
    clearTimeout(timer);
  }
}

const responseTimeout = Symbol('ghostpay.responseTimeoutMs');

/**
 * Lifts the response timeout (`responseTimeoutMs`) of one pool connection, for a session whose
 * statements may rightly run without an answer for longer: `migrate`'s, which waits for the
 * advisory lock and runs migration steps with no statement timeout.
 */
export function withoutResponseTimeout(client: pg.PoolClient): void {
  (client as unknown as { [responseTimeout]: number })[responseTimeout] = 0;
}

/**
 * A pg `Client` class whose connections are given up as lost once one statement has been
 * outstanding for `timeoutMs` (queued statements do not count: the clock is the statement's
 * own, from when a sweep first sees it sent and unanswered). A live server answers or cancels
 * every statement within its statement timeout, which `timeoutMs` exceeds. Giving up destroys
 * the socket: pg fails every statement on it, the client is no longer queryable, and the pool
 * discards it on release, in or out of a transaction, instead of handing the dead connection to
 * the next caller.
 *
 * Nothing runs per statement or per message: one unref'd timer per pool sweeps its connections
 * every `timeoutMs / 4` (at most every second) and compares each one's statement in flight (pg's
 * `_getActiveQuery()`) with the one the previous sweeps saw. A watcher with a timer per statement
 * and a listener per protocol message cost the DB-limit bench about a tenth of its charges/s
 * (bench/RESULTS.md, change 36).
 */
function watchedClient(Base: typeof pg.Client, timeoutMs: number): typeof pg.Client {
  if (!(timeoutMs > 0)) return Base;
  const sweepEveryMs = Math.max(25, Math.min(1_000, Math.floor(timeoutMs / 4)));
  return class WatchedClient extends Base {
    static readonly #open = new Set<WatchedClient>();
    static #sweeper: NodeJS.Timeout | undefined;

    static #sweep(): void {
      const now = Date.now();
      for (const client of WatchedClient.#open) client.#check(now);
      if (WatchedClient.#open.size === 0) {
        clearInterval(WatchedClient.#sweeper);
        WatchedClient.#sweeper = undefined;
      }
    }

    [responseTimeout] = timeoutMs;
    /** The statement in flight when a sweep last looked, and when a sweep first saw it. */
    #seen: unknown;
    #since = 0;

    // biome-ignore lint/suspicious/noExplicitAny: pg's Client constructor takes a config or a connection string
    constructor(config?: any) {
      super(config);
      WatchedClient.#open.add(this);
      WatchedClient.#sweeper ??= setInterval(() => WatchedClient.#sweep(), sweepEveryMs).unref();
      this.once('end', () => WatchedClient.#open.delete(this));
    }

    #check(now: number): void {
      const self = this as unknown as {
        _getActiveQuery?: () => unknown;
        _ending?: boolean;
        connection?: { stream?: { destroyed?: boolean; destroy(error?: Error): void } };
      };
      const stream = self.connection?.stream;
      if (self._ending || stream?.destroyed) {
        WatchedClient.#open.delete(this);
        return;
      }
      const limit = this[responseTimeout];
      const active = limit > 0 ? self._getActiveQuery?.() : undefined;
      if (!active) {
        this.#seen = undefined;
        return;
      }
      // A submittable (a cursor) reports through its own events; pg's own timeout handles it.
      if (typeof (active as { submit?: unknown }).submit === 'function' && !(active instanceof pg.Query)) return;
      if (active !== this.#seen) {
        this.#seen = active;
        this.#since = now;
        return;
      }
      if (now - this.#since < limit) return;
      WatchedClient.#open.delete(this);
      stream?.destroy(new Error(`PostgreSQL sent nothing for ${limit} ms while a statement was outstanding: connection given up as lost`));
    }
  };
}

/**
 * Ends a client without waiting on a peer that may never answer: `end()` on a half-open socket
 * waits for the server's goodbye forever. After a second, or once ended, its socket is
 * destroyed.
 */
async function endPromptly(client: pg.Client): Promise<void> {
  client.removeAllListeners('end');
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([client.end().catch(() => {}), new Promise<void>((resolve) => (timer = setTimeout(resolve, 1_000)))]);
  clearTimeout(timer);
  // pg keeps its socket as `connection.stream`; destroying one already closed does nothing.
  (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
}

/**
 * A dedicated LISTEN connection that reconnects with capped exponential backoff, and treats a
 * heartbeat left unanswered for `heartbeatMs` as a lost connection.
 */
function createReconnectingListener(
  url: string,
  ssl: true | undefined,
  channel: string,
  listener: NotificationListener,
  onReconnect: (() => void) | undefined,
  heartbeatMs: number,
) {
  let stopped = false;
  let client: pg.Client | undefined;
  let attempt = 0;
  let timer: NodeJS.Timeout | undefined;
  let heartbeat: NodeJS.Timeout | undefined;
  let resolveReady!: () => void;
  let rejectReady!: (error: Error) => void;
  const ready = new Promise<void>((resolve, reject) => {
    resolveReady = resolve;
    rejectReady = reject;
  });
  let connectedOnce = false;

  /** The client being connected, so that `stop` can end it. */
  let connecting: pg.Client | undefined;

  const connect = async () => {
    if (stopped) return;
    const next = new pg.Client({
      connectionString: url,
      ...(ssl ? { ssl } : {}),
      application_name: `ghostpay-listen-${channel}`,
      // Lets the OS reap the socket of a connection the heartbeat gave up on.
      keepAlive: true,
      keepAliveInitialDelayMillis: 10_000,
      // A reconnect to a peer that accepts and never answers (a load balancer in front of a
      // dead primary) fails and is retried, instead of hanging before any heartbeat runs.
      connectionTimeoutMillis: heartbeatMs,
      query_timeout: heartbeatMs,
    });
    connecting = next;
    next.on('notification', (message) => {
      if (message.channel === channel) listener(message.payload ?? '');
    });
    next.on('error', () => scheduleReconnect(next));
    next.on('end', () => scheduleReconnect(next));
    try {
      await next.connect();
      // `stop` may have run during either await: the new connection is then nobody's to close.
      if (stopped) throw new Error('listener stopped');
      await next.query(`listen ${channel}`);
      if (stopped) throw new Error('listener stopped');
      connecting = undefined;
      client = next;
      attempt = 0;
      startHeartbeat(next);
      if (connectedOnce) onReconnect?.();
      connectedOnce = true;
      resolveReady();
    } catch (error) {
      if (connecting === next) connecting = undefined;
      await endPromptly(next);
      if (stopped) return;
      if (!connectedOnce && attempt === 0) {
        rejectReady(error as Error);
        stopped = true;
        return;
      }
      scheduleReconnect(undefined);
    }
  };
  /** Every `heartbeatMs`, `select 1`; no answer within another `heartbeatMs` (or an error) and the connection is lost. */
  const startHeartbeat = (current: pg.Client) => {
    clearInterval(heartbeat);
    let waiting = false;
    heartbeat = setInterval(() => {
      if (current !== client || waiting) return;
      waiting = true;
      const deadline = setTimeout(() => lose(current), heartbeatMs);
      current.query('select 1').then(
        () => {
          waiting = false;
          clearTimeout(deadline);
        },
        () => {
          clearTimeout(deadline);
          lose(current);
        },
      );
    }, heartbeatMs);
    heartbeat.unref();
  };
  /** Gives up on a connection that stopped answering: reconnect now, and end it without waiting (it may never answer). */
  const lose = (lost: pg.Client) => {
    if (lost !== client) return;
    scheduleReconnect(lost);
    void endPromptly(lost);
  };
  const scheduleReconnect = (from: pg.Client | undefined) => {
    if (stopped || (from && from !== client) || timer) return;
    clearInterval(heartbeat);
    client = undefined;
    const delay = Math.min(5_000, 100 * 2 ** attempt++) * (0.5 + Math.random() / 2);
    timer = setTimeout(() => {
      timer = undefined;
      void connect();
    }, delay);
  };
  void connect();
  return {
    ready,
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      clearInterval(heartbeat);
      // A reconnect in flight is ended too: its connect or LISTEN fails, and it is not kept.
      const current = [client, connecting].filter((c) => c !== undefined);
      client = undefined;
      connecting = undefined;
      await Promise.all(
        current.map((c) => {
          return endPromptly(c);
        }),
      );
    },
  };
}
