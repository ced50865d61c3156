import type { ApolloServer, BaseContext } from '@apollo/server';
import { ErrorCode, GhostPayError, type JwtVerifier, type Principal } from '@ghostpay/platform';
import type { GraphQLSchema } from 'graphql';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { apiSchemaFromSupergraph } from './api-schema.ts';
import { createGatewayQueryExecutor } from './gateway-query-executor.ts';
import { createSubscriptionGateway, type SubscriptionGateway, type SubscriptionGatewayOptions } from './subscription-gateway.ts';
import type { RouterSubscriptionsSettings } from './subscriptions-config.ts';

export interface RouterSubscriptionsOptions<TContext extends BaseContext> extends RouterSubscriptionsSettings {
  /** The router's gateway: its supergraph (on load and every reload) gives the API schema. */
  gateway: { onSchemaLoadOrUpdate(callback: (schemaContext: { coreSupergraphSdl: string }) => void): unknown };
  apollo: ApolloServer<TContext>;
  verifier: JwtVerifier;
  /** The router's per-request context for a caller, forwarding `authorization` to subgraphs. */
  contextFor(principal: Principal, authorization: string): TContext;
  logger: Logger;
  registry?: Registry;
  /** The router's manifest operations and whether safelist mode is on (see `SubscriptionGatewayOptions`). */
  persistedQueries?: SubscriptionGatewayOptions['persistedQueries'];
  /** Checks on the parsed document before it is validated (see `SubscriptionGatewayOptions`). */
  checkDocument?: SubscriptionGatewayOptions['checkDocument'];
  /** Each WebSocket subscribe attempt's first answer, for the router's request event. */
  onWebSocketAnswered?: SubscriptionGatewayOptions['onWebSocketAnswered'];
  /** The client address identity unauthenticated WebSockets count under (see `SubscriptionGatewayOptions`). */
  addressOf?: SubscriptionGatewayOptions['addressOf'];
  /** Where the per-API-key limit is counted (see `SubscriptionGatewayOptions`). */
  slots?: SubscriptionGatewayOptions['slots'];
  /** The per-minute rate limit of each WebSocket subscribe (see `SubscriptionGatewayOptions`). */
  admitWebSocketSubscribe?: SubscriptionGatewayOptions['admitWebSocketSubscribe'];
  /** Ends the open subscriptions of a revoked API key (see `SubscriptionGatewayOptions`). */
  checkApiKey?: SubscriptionGatewayOptions['checkApiKey'];
  /** Each per-event re-read of an open subscription (see `SubscriptionGatewayOptions`). */
  onEventRead?: SubscriptionGatewayOptions['onEventRead'];
  /** The error codes of each later payload an open subscription sends (see `SubscriptionGatewayOptions`). */
  onErrorsSent?: SubscriptionGatewayOptions['onErrorsSent'];
}

/** Everything `createRouter` needs in one call: the subscription gateway over its own gateway. */
export function createRouterSubscriptions<TContext extends BaseContext>(
  options: RouterSubscriptionsOptions<TContext>,
): SubscriptionGateway {
  let schema: GraphQLSchema | undefined;
  options.gateway.onSchemaLoadOrUpdate(({ coreSupergraphSdl }) => {
    try {
      schema = apiSchemaFromSupergraph(coreSupergraphSdl);
    } catch (error) {
      // Keep serving the previous schema: the gateway itself rejects a bad supergraph too.
      options.logger.error({ err: error }, 'subscriptions: could not read the API schema of the new supergraph');
    }
  });
  return createSubscriptionGateway({
    verifier: options.verifier,
    schema: () => {
      if (!schema) throw new GhostPayError(ErrorCode.SERVICE_UNAVAILABLE, 'The supergraph is not loaded yet');
      return schema;
    },
    upstreams: options.upstreams,
    upstreamAuthorization: options.upstreamAuthorization,
    executeQuery: createGatewayQueryExecutor({ apollo: options.apollo, verifier: options.verifier, contextFor: options.contextFor }),
    logger: options.logger,
    registry: options.registry,
    limits: options.limits,
    upstream: options.upstream,
    persistedQueries: options.persistedQueries,
    checkDocument: options.checkDocument,
    onWebSocketAnswered: options.onWebSocketAnswered,
    slots: options.slots,
    addressOf: options.addressOf,
    admitWebSocketSubscribe: options.admitWebSocketSubscribe,
    checkApiKey: options.checkApiKey,
    onEventRead: options.onEventRead,
    onErrorsSent: options.onErrorsSent,
  });
}
