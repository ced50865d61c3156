import type { ApolloServer, BaseContext } from '@apollo/server';
import { ErrorCode, GhostPayError, type JwtVerifier, type Principal } from '@ghostpay/platform';
import type { ExecuteQuery } from './client-subscription.ts';

export interface GatewayQueryExecutorOptions<TContext extends BaseContext> {
  /** The router's Apollo Server (gateway inside): plugins, auth-directive filter and query plan apply. */
  apollo: ApolloServer<TContext>;
  verifier: JwtVerifier;
  /** Builds the router's per-request context for this caller (forwarding `authorization` to subgraphs). */
  contextFor(principal: Principal, authorization: string): TContext;
}

/**
 * Per-event queries run in-process through `apollo.executeOperation`: the whole gateway
 * pipeline (validation, operation limits, `@authenticated`/`@requiresScopes`, planning,
 * subgraph fetches with the client's token) but not the HTTP rate limiter — a subscription's
 * events are not client requests; subscriptions are limited per connection and API key.
 * The token is verified again on every event, so an expired one ends the subscription even
 * if the expiry timer has not fired yet.
 */
export function createGatewayQueryExecutor<TContext extends BaseContext>(options: GatewayQueryExecutorOptions<TContext>): ExecuteQuery {
  return async ({ query, variables, operationName, authorization }) => {
    let principal: Principal | undefined;
    try {
      principal = await options.verifier.verifyAuthorization(authorization);
    } catch (error) {
      const message = error instanceof GhostPayError ? error.message : 'Token is invalid';
      return { data: null, errors: [{ message, extensions: { code: ErrorCode.UNAUTHENTICATED } }] };
    }
    if (!principal)
      return { data: null, errors: [{ message: 'Authentication required', extensions: { code: ErrorCode.UNAUTHENTICATED } }] };
    const response = await options.apollo.executeOperation(
      { query, variables, ...(operationName ? { operationName } : {}) },
      { contextValue: options.contextFor(principal, authorization) },
    );
    if (response.body.kind !== 'single') {
      return {
        data: null,
        errors: [{ message: 'Incremental delivery is not supported here', extensions: { code: ErrorCode.BAD_USER_INPUT } }],
      };
    }
    return response.body.singleResult;
  };
}
