import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { formatGraphQLError, type JwtVerifier, type Principal, requestIdOf, type SubgraphContext } from '@ghostpay/platform';
import type { GraphQLSchema } from 'graphql';
import { useServer } from 'graphql-ws/use/ws';
import type { Logger } from 'pino';
import { WebSocketServer } from 'ws';
import type { ChargeLookups } from './charge-queries.ts';
import { type ChargesContext, createLoaders } from './resolvers.ts';

export interface SubscriptionServer {
  /** Pass to the HTTP server's `upgrade` event. */
  onUpgrade(req: IncomingMessage, socket: Socket, head: Buffer): void;
  /** Closes every subscription socket (1001 going away) and the WebSocket server. */
  close(): Promise<void>;
}

export interface SubscriptionServerOptions {
  schema: GraphQLSchema;
  lookups: ChargeLookups;
  verifier: JwtVerifier;
  logger: Logger;
  /** Path accepting upgrades. @default '/graphql' */
  path?: string;
  /** Largest accepted WebSocket message. @default 64 KiB */
  maxPayloadBytes?: number;
}

/**
 * graphql-ws (`graphql-transport-ws`) on the same path as HTTP GraphQL. The caller is
 * authenticated once per connection from `connection_init` `{ authorization: "Bearer ..." }`
 * or the upgrade request's Authorization header; a missing or invalid token closes the
 * socket with 4403. Each operation is then authorized by its resolver like HTTP requests.
 */
export function createSubscriptionServer(options: SubscriptionServerOptions): SubscriptionServer {
  const path = options.path ?? '/graphql';
  const wss = new WebSocketServer({ noServer: true, maxPayload: options.maxPayloadBytes ?? 64 * 1024 });
  const principals = new WeakMap<object, Principal>();

  const disposable = useServer<Record<string, unknown> | undefined>(
    {
      schema: options.schema,
      async onConnect(ctx) {
        const fromPayload = ctx.connectionParams?.authorization;
        const header = typeof fromPayload === 'string' ? fromPayload : ctx.extra.request.headers.authorization;
        try {
          const principal = await options.verifier.verifyAuthorization(header);
          if (!principal) return false;
          principals.set(ctx.extra.socket, principal);
          return true;
        } catch {
          return false;
        }
      },
      context(ctx): ChargesContext {
        const requestId = requestIdOf(ctx.extra.request);
        const base: SubgraphContext = {
          principal: principals.get(ctx.extra.socket),
          requestId,
          logger: options.logger.child({ requestId }),
        };
        return { ...base, ...createLoaders(options.lookups, base) };
      },
      // Same error shape as HTTP: closed list of codes, never internals.
      onError: (_ctx, _id, _payload, errors) => errors.map((error) => formatGraphQLError(error.toJSON(), error)),
      onNext: (_ctx, _id, _payload, _args, result) =>
        result.errors ? { ...result, errors: result.errors.map((error) => formatGraphQLError(error.toJSON(), error)) } : undefined,
    },
    wss,
  );

  return {
    onUpgrade(req, socket, head) {
      const pathname = (req.url ?? '/').split('?')[0];
      if (pathname !== path) {
        socket.destroy();
        return;
      }
      wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
    },
    async close() {
      await disposable.dispose();
      for (const client of wss.clients) client.terminate();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
    },
  };
}
