import { type Column, type SQL, sql } from 'drizzle-orm';

/** The id condition of a lookup: `column = $id` for one id, `column = any($ids::text[])` for more. */
export type IdsCondition = (column: Column) => SQL;

/** A drizzle prepared query (`.prepare('')`), as far as a lookup needs it. */
export interface PreparedLookup<Row> {
  execute(values: Record<string, unknown>): Promise<Row[]>;
}

/** Rows for a list of ids, with the query's other placeholders' values (`id` and `ids` are taken). */
export type ByIds<Row, Values extends Record<string, unknown> = Record<never, never>> = (
  ids: readonly string[],
  values: Values,
) => Promise<Row[]>;

/**
 * A lookup by a list of ids (a DataLoader's batch), built into SQL once rather than on every
 * call: drizzle's query builder was 22% of the cards process's samples when its loader rebuilt
 * the select per load (bench/RESULTS.md, change 33). `build` is called twice, with the
 * condition for one id and for a batch, and returns the query prepared with an empty name, so
 * the pool's `preparingClient` names it and `DATABASE_PREPARED_STATEMENTS` still decides.
 *
 * - A batch is `= any($ids::text[])`: one statement text for every batch size, where an
 *   `in (...)` list has a text per length and uses up a connection's prepared names.
 * - One id, the commonest load, is `= $id`: PostgreSQL spends ~10 µs more per query on the
 *   array (change 33's microbenchmark).
 * - No ids is no query.
 */
export function preparedByIds<Row, Values extends Record<string, unknown> = Record<never, never>>(
  build: (idsCondition: IdsCondition) => PreparedLookup<Row>,
): ByIds<Row, Values> {
  const one = build((column) => sql`${column} = ${sql.placeholder('id')}`);
  const many = build((column) => sql`${column} = any(${sql.placeholder('ids')}::text[])`);
  return (ids, values) => {
    if (ids.length === 0) return Promise.resolve([]);
    return ids.length === 1 ? one.execute({ ...values, id: ids[0] }) : many.execute({ ...values, ids: [...ids] });
  };
}

/** Each id's row, or undefined where there is none, in the order asked: a DataLoader batch's answer. */
export function inIdOrder<Row extends { id: string }>(ids: readonly string[], rows: readonly Row[]): (Row | undefined)[] {
  const byId = new Map(rows.map((row) => [row.id, row]));
  return ids.map((id) => byId.get(id));
}
