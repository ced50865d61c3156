import { BadUserInputError } from '@ghostpay/platform';
import { GraphQLScalarType, Kind } from 'graphql';

function parse(value: unknown): Date {
  const date = typeof value === 'string' ? new Date(value) : undefined;
  if (!date || Number.isNaN(date.getTime())) throw new BadUserInputError('DateTime must be an ISO-8601 string');
  return date;
}

/** ISO-8601 instants in UTC with millisecond precision (`2026-11-21T23:22:27.000Z`). */
export const DateTimeScalar = new GraphQLScalarType({
  name: 'DateTime',
  serialize(value) {
    if (value instanceof Date) return value.toISOString();
    return parse(value).toISOString();
  },
  parseValue: parse,
  parseLiteral(ast) {
    if (ast.kind !== Kind.STRING) throw new BadUserInputError('DateTime must be an ISO-8601 string');
    return parse(ast.value);
  },
});
