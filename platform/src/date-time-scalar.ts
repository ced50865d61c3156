import { GraphQLError, GraphQLScalarType, Kind } from 'graphql';

const isoDateTime = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})$/;

function parse(value: unknown): Date {
  if (typeof value === 'string' && isoDateTime.test(value)) {
    const date = new Date(value);
    if (!Number.isNaN(date.getTime())) return date;
  }
  // Thrown during input coercion; Apollo reports it as BAD_USER_INPUT.
  throw new GraphQLError('DateTime must be an ISO-8601 date-time with a time zone, e.g. 2026-01-31T12:00:00Z');
}

/**
 * The `DateTime` scalar every subgraph uses: ISO-8601 with a time zone in, `toISOString()` (UTC,
 * milliseconds) out; values are `Date` inside resolvers.
 */
export const DateTimeScalar = new GraphQLScalarType<Date, string>({
  name: 'DateTime',
  serialize(value) {
    if (value instanceof Date) return value.toISOString();
    return parse(value).toISOString();
  },
  parseValue: parse,
  parseLiteral(ast) {
    if (ast.kind !== Kind.STRING) throw new GraphQLError('DateTime must be a string');
    return parse(ast.value);
  },
});
