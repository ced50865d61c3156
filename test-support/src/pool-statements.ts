import type pg from 'pg';

/**
 * Every statement text `run` sends through `pool.query`, in order, and a
 * `'connect (transaction or checkout)'` entry for every client checked out by other code (a
 * transaction's statements go through that client, not the pool). For tests that pin how
 * many statements a resolver sends and with which text (one prepared statement per text).
 */
export async function poolStatementsOf<T>(pool: pg.Pool, run: () => Promise<T>): Promise<{ result: T; statements: string[] }> {
  const statements: string[] = [];
  const originalQuery = pool.query;
  const originalConnect = pool.connect;
  // pool.query checks a client out itself, synchronously, which is not extra.
  let insidePoolQuery = false;
  pool.query = ((...args: unknown[]) => {
    const first = args[0] as string | { text: string };
    statements.push(typeof first === 'string' ? first : first.text);
    insidePoolQuery = true;
    try {
      return (originalQuery as (...a: unknown[]) => unknown).apply(pool, args);
    } finally {
      insidePoolQuery = false;
    }
  }) as typeof pool.query;
  pool.connect = ((...args: unknown[]) => {
    if (!insidePoolQuery) statements.push('connect (transaction or checkout)');
    return (originalConnect as (...a: unknown[]) => unknown).apply(pool, args);
  }) as typeof pool.connect;
  try {
    return { result: await run(), statements };
  } finally {
    pool.query = originalQuery;
    pool.connect = originalConnect;
  }
}
