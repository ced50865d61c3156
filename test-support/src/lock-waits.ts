import type pg from 'pg';

/**
 * Resolves once some backend is waiting for a lock `holder` (a connection inside a transaction)
 * holds: what a race test needs before it lets go, so the writer under test really waited for the
 * lock instead of arriving after the commit (a slow machine, a guessed sleep). Polls through
 * `pool` (another connection: a transaction's own view of pg_stat_activity is a snapshot).
 */
export async function untilBlockedBy(pool: pg.Pool, holder: pg.ClientBase, timeoutMs = 10_000): Promise<void> {
  const { rows } = await holder.query<{ pid: number }>('select pg_backend_pid() as pid');
  const holderPid = rows[0]!.pid;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const waiting = await pool.query('select 1 from pg_stat_activity where $1 = any(pg_blocking_pids(pid))', [holderPid]);
    if (waiting.rowCount) return;
    if (Date.now() > deadline) throw new Error(`no backend waited for a lock of backend ${holderPid} within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
