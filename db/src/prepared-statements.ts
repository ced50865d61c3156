import pg from 'pg';

/** How many statements each connection prepares when the caller does not say. */
export const defaultPreparedStatementsPerConnection = 100;

/**
 * A pg `Client` class that runs parameterized statements as named prepared statements, up to
 * `max` distinct statement texts per connection, like postgres.js (`prepare: true`) and
 * PgJDBC (`prepareThreshold`) do by default. node-postgres prepares only the queries given a
 * `name`, and drizzle names none, so without this PostgreSQL parses, analyzes and plans every
 * statement on every execution: that was 35–45% of its CPU per charge (bench/RESULTS.md,
 * change 26).
 *
 * - Only queries that take parameters: they already use the extended protocol, which is
 *   where a name can go. Parameterless ones (BEGIN, COMMIT, `select 1`) stay simple queries.
 * - A name is per connection, given on first sight of a text; the server keeps the statement
 *   until the connection closes. Past `max` texts a connection runs new texts unnamed, as
 *   before: statements whose text varies with their input (an `IN` list's length) cannot
 *   grow a backend's memory without bound.
 * - A statement whose Parse fails is forgotten by pg and sent again next time; PostgreSQL
 *   re-plans prepared statements itself when a table they use changes.
 * - `max` 0 turns it off, for a pooler between us and PostgreSQL that cannot follow named
 *   statements across server connections (PgBouncer in transaction mode before 1.21).
 */
export function preparingClient(max: number): typeof pg.Client {
  if (!Number.isInteger(max) || max < 0) throw new Error(`prepared statements per connection must be a whole number ≥ 0, got ${max}`);
  return class PreparingClient extends pg.Client {
    /** Statement text → its name on this connection. */
    readonly #names = new Map<string, string>();

    // biome-ignore lint/suspicious/noExplicitAny: pg's query() is a dozen overloads; this only adds a name and passes everything on
    override query(config: any, values?: any, callback?: any): any {
      const query: (...args: unknown[]) => unknown = super.query;
      if (max > 0 && isUnnamedParameterized(config, values)) {
        let name = this.#names.get(config.text);
        if (name === undefined && this.#names.size < max) {
          name = `ghostpay_${this.#names.size + 1}`;
          this.#names.set(config.text, name);
        }
        if (name !== undefined) return query.call(this, { ...config, name }, values, callback);
      }
      return query.call(this, config, values, callback);
    }
  };
}

/** A query config (not a string, not a submittable such as a cursor) with parameters and no name. */
function isUnnamedParameterized(config: unknown, values: unknown): config is pg.QueryConfig {
  if (typeof config !== 'object' || config === null) return false;
  const query = config as Partial<pg.QueryConfig> & { submit?: unknown };
  if (typeof query.submit === 'function' || query.name || typeof query.text !== 'string') return false;
  const parameters = Array.isArray(values) ? values : query.values;
  return Array.isArray(parameters) && parameters.length > 0;
}
