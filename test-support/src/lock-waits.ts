import type pg from 'pg';

/**
 * Resolves once some backend is waiting for a lock `holder` (a connection inside a transaction)
 * holds: what a race test needs before it lets go, so the writer under test really waited for the
 * lock instead of arriving after the commit (a slow machine, a guessed sleep). Polls through
 * `pool` (another connection: a transaction's own view of pg_stat_activity is a snapshot).
 */
export async function untilBlockedBy(pool: pg.Pool, holder: pg.ClientBase, timeoutMs = 10_000): Promise<void> {
  await pollUntilBlockedBy(pool, holder, timeoutMs, () => false);
}

/** `untilBlockedBy`, giving up (false) as soon as `gaveUp()` says so instead of at the timeout. */
async function pollUntilBlockedBy(pool: pg.Pool, holder: pg.ClientBase, timeoutMs: number, gaveUp: () => boolean): Promise<boolean> {
  const { rows } = await holder.query<{ pid: number }>('select pg_backend_pid() as pid');
  const holderPid = rows[0]!.pid;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const waiting = await pool.query('select 1 from pg_stat_activity where $1 = any(pg_blocking_pids(pid))', [holderPid]);
    if (waiting.rowCount) return true;
    if (gaveUp()) return false;
    if (Date.now() > deadline) throw new Error(`no backend waited for a lock of backend ${holderPid} within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/**
 * A race with another writer: runs `statements` (each with `params`) in a transaction of their
 * own, starts `writer` (which then waits for that transaction's locks), waits until it is blocked
 * (`untilBlockedBy`), keeps the locks `holdMs` longer (a function: computed then), checks the
 * writer is still waiting, and commits. Returns the writer's result and the database's clock just
 * before the commit: what the writer decided after the wait must be no earlier than that.
 *
 * A writer that answers (or fails) before it ever waited fails the race at once, with its own
 * error as the cause, instead of after `untilBlockedBy`'s 10 s with "no backend waited": the
 * writer not taking the lock is the finding, and its error says why.
 */
export async function whileAnotherTransactionHolds<T>(
  pool: pg.Pool,
  statements: readonly string[],
  params: readonly unknown[],
  writer: () => Promise<T>,
  holdMs: number | (() => number),
): Promise<{ result: T; releasedAt: Date }> {
  const holder = await pool.connect();
  let pending: Promise<T>;
  let releasedAt: Date;
  try {
    await holder.query('begin');
    for (const statement of statements) await holder.query(statement, [...params]);
    pending = writer();
    let answered: { error?: unknown } | undefined;
    pending.then(
      () => {
        answered = {};
      },
      (error: unknown) => {
        answered = { error };
      },
    );
    if (!(await pollUntilBlockedBy(pool, holder, 10_000, () => answered !== undefined))) {
      throw new Error(
        "the writer answered before it waited for the other transaction's locks",
        answered?.error === undefined ? undefined : { cause: answered.error },
      );
    }
    await new Promise((resolve) => setTimeout(resolve, typeof holdMs === 'function' ? holdMs() : holdMs));
    const settled = await Promise.race([
      pending.then(
        () => true,
        () => true,
      ),
      new Promise<false>((resolve) => setTimeout(resolve, 10, false)),
    ]);
    if (settled) throw new Error('the writer answered while the other transaction still held its locks');
    releasedAt = (await holder.query<{ at: Date }>('select clock_timestamp() as at')).rows[0]!.at;
    await holder.query('commit');
  } catch (error) {
    await holder.query('rollback').catch(() => undefined);
    throw error;
  } finally {
    holder.release();
  }
  return { result: await pending, releasedAt };
}
