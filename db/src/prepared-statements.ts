import pg from 'pg';

/** How many statements each connection prepares when the caller does not say. */
export const defaultPreparedStatementsPerConnection = 100;

/**
 * A pg `Client` class that runs parameterized statements as named prepared statements, up to
 * `max` distinct statement texts per connection, like postgres.js (`prepare: true`) and
 * PgJDBC (`prepareThreshold`) do by default. node-postgres prepares only the queries given a
 * `name`, and drizzle names none, so without this PostgreSQL parses, analyzes and plans every
 * statement on every execution: that was a third to a half of its CPU per charge (bench/RESULTS.md,
 * change 26).
 *
 * - Only queries that take parameters: they already use the extended protocol, which is
 *   where a name can go. Parameterless ones (BEGIN, COMMIT, `select 1`) stay simple queries.
 * - A name is per connection, given on first sight of a text; the server keeps the statement
 *   until the connection closes. Past `max` texts a connection runs new texts unnamed, as
 *   before: statements whose text varies with their input (an `IN` list's length) cannot
 *   grow a backend's memory without bound.
 * - A statement whose Parse fails is forgotten by pg and sent again next time; PostgreSQL
 *   re-plans prepared statements itself when a table they use changes, and one whose result
 *   columns changed type is prepared again under a new name (see `isStalePlan`).
 * - `max` 0 turns it off, for a pooler between us and PostgreSQL that cannot follow named
 *   statements across server connections (PgBouncer in transaction mode before 1.21, or with
 *   `max_prepared_statements = 0`).
 * - A connection told that one of its statements does not exist (`26000`: such a pooler moved
 *   it to another server connection, or the session was reset by `DISCARD ALL`/`DEALLOCATE`)
 *   has lost them all, or will lose them again: that statement fails once, and the connection
 *   runs every statement unnamed from then on, instead of failing every named one until it
 *   closes. Later connections try preparing again (each fails once if the pooler stays).
 */
export function preparingClient(max: number): typeof pg.Client {
  if (!Number.isInteger(max) || max < 0) throw new Error(`prepared statements per connection must be a whole number ≥ 0, got ${max}`);
  return class PreparingClient extends pg.Client {
    /** Statement text → its name on this connection. */
    readonly #names = new Map<string, string>();
    /** Statements prepared on this connection so far, the forgotten ones included (they stay on the server). */
    #prepared = 0;
    /** Set once the server lost a statement of this connection's: nothing is named any more. */
    #unnamedOnly = false;

    // biome-ignore lint/suspicious/noExplicitAny: pg's query() is a dozen overloads; this only adds a name and passes everything on
    override query(config: any, values?: any, callback?: any): any {
      const query: (...args: unknown[]) => unknown = super.query;
      if (max > 0 && !this.#unnamedOnly && isUnnamedParameterized(config, values)) {
        const text = config.text;
        let name = this.#names.get(text);
        if (name === undefined && this.#prepared < max) {
          name = `ghostpay_${++this.#prepared}`;
          this.#names.set(text, name);
        }
        if (name !== undefined) {
          const named = { ...config, name };
          const forgetIfStale = (error: unknown) => {
            if (isLostStatement(error)) {
              this.#unnamedOnly = true;
              this.#names.clear();
            } else if (isStalePlan(error) && this.#names.get(text) === named.name) this.#names.delete(text);
          };
          if (typeof callback === 'function') {
            return query.call(this, named, values, (error: unknown, result: unknown) => {
              forgetIfStale(error);
              callback(error, result);
            });
          }
          const pending = query.call(this, named, values) as Promise<unknown>;
          // Observes the failure; the caller still gets it from `pending`.
          pending.then(undefined, forgetIfStale);
          return pending;
        }
      }
      return query.call(this, config, values, callback);
    }
  };
}

/**
 * PostgreSQL re-plans a prepared statement when a table it reads changes, but refuses to run
 * it once its result columns changed type (a migration from a newer replica during a rolling
 * deploy): every later execution on that connection would fail the same way. That statement
 * fails once; its text is prepared afresh under a new name on the next call.
 */
function isStalePlan(error: unknown): boolean {
  const { code, message } = (error ?? {}) as { code?: unknown; message?: unknown };
  return code === '0A000' && typeof message === 'string' && message.includes('cached plan must not change result type');
}

/** `prepared statement "…" does not exist`: the server no longer has a statement this connection prepared. */
function isLostStatement(error: unknown): boolean {
  return (error as { code?: unknown } | undefined)?.code === '26000';
}

/** A query config (not a string, not a submittable such as a cursor) with parameters and no name. */
function isUnnamedParameterized(config: unknown, values: unknown): config is pg.QueryConfig {
  if (typeof config !== 'object' || config === null) return false;
  const query = config as Partial<pg.QueryConfig> & { submit?: unknown };
  if (typeof query.submit === 'function' || query.name || typeof query.text !== 'string') return false;
  const parameters = Array.isArray(values) ? values : query.values;
  return Array.isArray(parameters) && parameters.length > 0;
}
