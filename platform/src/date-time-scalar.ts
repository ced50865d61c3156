import { GraphQLError, GraphQLScalarType, Kind } from 'graphql';

const isoDateTime = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:\d{2})$/;

const message = 'DateTime must be an ISO-8601 date-time with a time zone, e.g. 2026-01-31T12:00:00Z';

/**
 * True when the written calendar and clock fields name themselves: `new Date()` accepts a day
 * up to 31 in any month and the hour 24, and rolls them over (`2026-02-30` is March 2, `24:00`
 * the next day), so a field that does not come back unchanged was not a real date or time.
 * (Months, hours, minutes, seconds and offsets outside their ranges V8 already refuses.)
 */
function fieldsRoundTrip(fields: string[]): boolean {
  const [year, month, day, hour, minute, second] = fields.map((f) => (f === undefined ? 0 : Number(f))) as number[];
  const date = new Date(0);
  // setUTCFullYear, not Date.UTC: Date.UTC maps the years 0–99 to 1900–1999.
  date.setUTCFullYear(year!, month! - 1, day);
  date.setUTCHours(hour!, minute, second);
  return (
    date.getUTCFullYear() === year &&
    date.getUTCMonth() === month! - 1 &&
    date.getUTCDate() === day &&
    date.getUTCHours() === hour &&
    date.getUTCMinutes() === minute &&
    date.getUTCSeconds() === second
  );
}

function parse(value: unknown): Date {
  const match = typeof value === 'string' ? isoDateTime.exec(value) : null;
  if (match) {
    const date = new Date(match[0]);
    if (!Number.isNaN(date.getTime())) {
      if (fieldsRoundTrip(match.slice(1, 7))) return date;
      // Thrown during input coercion; Apollo reports it as BAD_USER_INPUT.
      throw new GraphQLError('DateTime must be a real calendar date and time (no February 30, no 24:00), e.g. 2026-01-31T12:00:00Z');
    }
  }
  throw new GraphQLError(message);
}

/**
 * The `DateTime` scalar every subgraph uses: ISO-8601 with a time zone in, `toISOString()` (UTC,
 * milliseconds) out; values are `Date` inside resolvers. A date that does not exist
 * (`2026-02-30`, `2026-04-31`, `2026-01-01T24:00:00Z`) is refused, never rolled over.
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
