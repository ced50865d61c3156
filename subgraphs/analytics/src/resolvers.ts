import type { GraphQLResolverMap } from '@apollo/subgraph';
import { BadUserInputError, DateTimeScalar, requireScope, type SubgraphContext } from '@ghostpay/platform';
import { type AnalyticsStore, decodeCursor, type Granularity, type RequestLogFilter } from './analytics-store.ts';
import { SafeIntScalar } from './safe-int-scalar.ts';

export interface AnalyticsContext extends SubgraphContext {
  store: AnalyticsStore;
}

/** Aggregate queries read one document per operation or key per minute: bound the range. */
const maxRangeDays = 93;
const maxPageSize = 500;
const maxTopOperations = 100;

function checkRange(from: Date, to: Date, fields = { from: 'from', to: 'to' }): void {
  if (to.getTime() <= from.getTime()) throw new BadUserInputError([{ field: fields.to, message: 'must be after from' }]);
  if (to.getTime() - from.getTime() > maxRangeDays * 86_400_000) {
    throw new BadUserInputError([{ field: fields.to, message: `range must be at most ${maxRangeDays} days` }]);
  }
}

function usage(context: AnalyticsContext, apiKeyId: string, args: { from: Date; to: Date; granularity: Granularity }) {
  requireScope(context, 'analytics:read');
  checkRange(args.from, args.to);
  return context.store.usage(apiKeyId, args.from, args.to, args.granularity);
}

export const resolvers: GraphQLResolverMap<AnalyticsContext> = {
  DateTime: DateTimeScalar,
  SafeInt: SafeIntScalar,
  Query: {
    usage: (_: unknown, args: { apiKeyId: string; from: Date; to: Date; granularity: Granularity }, context: AnalyticsContext) =>
      usage(context, args.apiKeyId, args),
    topOperations: (_: unknown, args: { from: Date; to: Date; limit: number }, context: AnalyticsContext) => {
      requireScope(context, 'analytics:read');
      checkRange(args.from, args.to);
      if (!Number.isInteger(args.limit) || args.limit < 1 || args.limit > maxTopOperations) {
        throw new BadUserInputError([{ field: 'limit', message: `must be between 1 and ${maxTopOperations}` }]);
      }
      return context.store.topOperations(args.from, args.to, args.limit);
    },
    errorRate: (_: unknown, args: { from: Date; to: Date }, context: AnalyticsContext) => {
      requireScope(context, 'analytics:read');
      checkRange(args.from, args.to);
      return context.store.errorRate(args.from, args.to);
    },
    latency: (_: unknown, args: { operation: string; from: Date; to: Date }, context: AnalyticsContext) => {
      requireScope(context, 'analytics:read');
      checkRange(args.from, args.to);
      return context.store.latency(args.operation, args.from, args.to);
    },
    requestLog: async (
      _: unknown,
      args: { filter?: RequestLogFilter | null; first: number; after?: string | null },
      context: AnalyticsContext,
    ) => {
      requireScope(context, 'analytics:read');
      if (!Number.isInteger(args.first) || args.first < 1 || args.first > maxPageSize) {
        throw new BadUserInputError([{ field: 'first', message: `must be between 1 and ${maxPageSize}` }]);
      }
      const after = args.after ? decodeCursor(args.after) : undefined;
      if (args.after && !after) throw new BadUserInputError([{ field: 'after', message: 'is not a cursor from this connection' }]);
      // GraphQL passes null for omitted nullable inputs; the store wants undefined.
      const filter = Object.fromEntries(
        Object.entries(args.filter ?? {}).filter(([, v]) => v !== null && v !== undefined),
      ) as RequestLogFilter;
      if (filter.from && filter.to && filter.to.getTime() <= filter.from.getTime()) {
        throw new BadUserInputError([{ field: 'filter.to', message: 'must be after filter.from' }]);
      }
      const page = await context.store.requestLog(filter, args.first, after);
      return {
        edges: page.entries.map(({ cursor, entry }) => ({ cursor, node: entry })),
        pageInfo: { hasNextPage: page.hasNextPage, endCursor: page.endCursor },
      };
    },
  },
  ApiKey: {
    __resolveReference: (reference: { id: string }) => ({ id: reference.id }),
    usage: (apiKey: { id: string }, args: { from: Date; to: Date; granularity: Granularity }, context: AnalyticsContext) =>
      usage(context, apiKey.id, args),
  },
};
