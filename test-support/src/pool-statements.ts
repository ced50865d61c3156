import type pg from 'pg';
import { vi } from 'vitest';

/** What `poolStatementsOf` saw while its function ran. */
export interface PoolStatements<T> {
  result: T;
  /**
   * Every statement text sent through `pool.query`, in order, and a
   * `'connect (transaction or checkout)'` entry for every client checked out by other code.
   */
  statements: string[];
  /**
   * The statement texts sent on each client checked out by other code (a transaction's `begin`,
   * its statements and `commit` or `rollback`), one list per checkout in the order of the
   * checkouts (the order of the markers in `statements`), until the client is released.
   */
  checkouts: string[][];
}

const textOf = (args: unknown[]) => {
  const first = args[0] as string | { text: string };
  return typeof first === 'string' ? first : first.text;
};

/**
 * Every statement `run` sends through `pool`: through `pool.query`, and on the clients it checks
 * out (a transaction's statements go through that client, not the pool). For tests that pin how
 * many statements a resolver sends, inside and outside its transactions, and with which text
 * (one prepared statement per text). The pool and its clients are themselves again afterwards.
 */
export async function poolStatementsOf<T>(pool: pg.Pool, run: () => Promise<T>): Promise<PoolStatements<T>> {
  const statements: string[] = [];
  const checkouts: string[][] = [];
  const originalQuery = pool.query;
  const originalConnect = pool.connect;
  const watched = new Map<pg.PoolClient, () => void>();
  /** Records what is sent on `client` into `sent` until it is released. */
  const watch = (client: pg.PoolClient, sent: string[]) => {
    const { query, release } = client;
    // `query` is the class's own method, `release` the pool's per checkout: put back what was there.
    const ownQuery = Object.hasOwn(client, 'query');
    const unwatch = () => {
      if (ownQuery) client.query = query;
      else delete (client as { query?: unknown }).query;
      client.release = release;
      watched.delete(client);
    };
    client.query = ((...args: unknown[]) => {
      sent.push(textOf(args));
      return (query as (...a: unknown[]) => unknown).apply(client, args);
    }) as typeof client.query;
    client.release = ((...args: unknown[]) => {
      unwatch();
      return (release as (...a: unknown[]) => unknown).apply(client, args);
    }) as typeof client.release;
    watched.set(client, unwatch);
  };
  // pool.query checks a client out itself, synchronously, which is not extra.
  let insidePoolQuery = false;
  pool.query = ((...args: unknown[]) => {
    statements.push(textOf(args));
    insidePoolQuery = true;
    try {
      return (originalQuery as (...a: unknown[]) => unknown).apply(pool, args);
    } finally {
      insidePoolQuery = false;
    }
  }) as typeof pool.query;
  pool.connect = ((...args: unknown[]) => {
    const connect = originalConnect as (...a: unknown[]) => unknown;
    if (insidePoolQuery) return connect.apply(pool, args);
    statements.push('connect (transaction or checkout)');
    const sent: string[] = [];
    checkouts.push(sent);
    const [callback] = args as [((error: Error | undefined, client: pg.PoolClient, done: (release?: unknown) => void) => void)?];
    if (typeof callback === 'function') {
      return connect.call(pool, (error: Error | undefined, client: pg.PoolClient, done: (release?: unknown) => void) => {
        if (!error) watch(client, sent);
        // `done` is the client's own release: the watched one, so the client is put back as it was.
        callback(error, client, error ? done : (release?: unknown) => client.release(release as boolean));
      });
    }
    return (connect.call(pool) as Promise<pg.PoolClient>).then((client) => {
      watch(client, sent);
      return client;
    });
  }) as typeof pool.connect;
  try {
    return { result: await run(), statements, checkouts };
  } finally {
    pool.query = originalQuery;
    pool.connect = originalConnect;
    // A client still checked out (run did not release it): put back as it was.
    for (const unwatch of [...watched.values()]) unwatch();
  }
}

/**
 * Every statement `run` sends on any of `pool`'s connections, with its parameters, in order
 * (`poolStatementsOf` keeps only texts): for tests that re-run a statement as sent, e.g. under
 * `explain` to pin the index its plan uses. Watches the pool's client class, so it sees the
 * statements of every checkout and of `pool.query` alike.
 */
export async function connectionStatementsOf(
  pool: pg.Pool,
  run: () => Promise<unknown>,
): Promise<Array<{ text: string; values: unknown[] }>> {
  const Client = pool.options.Client as typeof pg.Client;
  const spy = vi.spyOn(Client.prototype, 'query');
  try {
    await run();
    return spy.mock.calls.map((call) => {
      const [config, values] = call as unknown as [string | pg.QueryConfig, unknown];
      if (typeof config === 'string') return { text: config, values: Array.isArray(values) ? values : [] };
      return { text: config.text, values: Array.isArray(values) ? values : (config.values ?? []) };
    });
  } finally {
    spy.mockRestore();
  }
}
