import { GraphQLError, GraphQLScalarType, Kind } from 'graphql';

const message = `SafeInt must be an integer from ${Number.MIN_SAFE_INTEGER} to ${Number.MAX_SAFE_INTEGER}`;

function checked(value: unknown): number {
  if (typeof value === 'number' && Number.isSafeInteger(value)) return value;
  throw new GraphQLError(message);
}

/**
 * `SafeInt`: an integer that a JSON number and a JavaScript number hold exactly, ±(2^53 − 1),
 * sent as a JSON number. The analytics totals (requests, errors, latency count) are sums over up
 * to 93 days and outgrow GraphQL's 32-bit `Int` at about 267 requests a second; at 2^53 − 1 they
 * would need a million requests a second for 285 years. A value outside the range is refused on
 * the way out too (an internal error), never rounded.
 */
export const SafeIntScalar = new GraphQLScalarType<number, number>({
  name: 'SafeInt',
  serialize: checked,
  parseValue: checked,
  parseLiteral(ast) {
    if (ast.kind !== Kind.INT) throw new GraphQLError(message);
    return checked(Number(ast.value));
  },
});
