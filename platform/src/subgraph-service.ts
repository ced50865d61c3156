import type { IncomingMessage } from 'node:http';
import { ApolloServer, type ApolloServerPlugin, type BaseContext } from '@apollo/server';
import {
  ApolloServerPluginCacheControlDisabled,
  ApolloServerPluginInlineTraceDisabled,
  ApolloServerPluginLandingPageDisabled,
} from '@apollo/server/plugin/disabled';
import { buildSubgraphSchema, type GraphQLResolverMap } from '@apollo/subgraph';

import type { DocumentNode, GraphQLSchema } from 'graphql';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { ForbiddenError, formatGraphQLError, GhostPayError, httpStatusFor, isErrorCode, UnauthenticatedError } from './errors.ts';
import { createGraphQLHandler } from './graphql-http.ts';
import {
  type BaseServerOptions,
  baseServerOptionsOf,
  createServiceServer,
  defaultShutdownTimeoutMs,
  type ReadinessCheck,
  type RequestHandler,
  type ServiceServer,
  type ServiceServerOptions,
} from './http-server.ts';
import type { JwtVerifier } from './jwt-verifier.ts';
import { type PeriodicJob, stopPeriodicJobs } from './periodic-job.ts';
import { requestIdOf } from './request-id.ts';
import { hasScope, type Principal } from './scopes.ts';
import type { ServerTlsConfig } from './tls.ts';

/** What every subgraph resolver receives. Services extend it with loaders and repositories. */
export interface SubgraphContext extends BaseContext {
  /** The verified caller; undefined when no Authorization header was sent. */
  principal?: Principal;
  requestId: string;
  logger: Logger;
}

/**
 * `shutdownTimeoutMs` and `maxConnections` (`BaseServerOptions`: spread
 * `serviceServerOptionsFrom(config)`) are passed to the server; see `ServiceServerOptions`.
 */
export interface SubgraphServiceOptions<TContext extends SubgraphContext> extends BaseServerOptions {
  name: string;
  typeDefs: DocumentNode;
  resolvers: GraphQLResolverMap<TContext>;
  verifier: JwtVerifier;
  logger: Logger;
  registry: Registry;
  /** Adds per-request members (DataLoaders, repositories) to the base context. */
  extendContext?: (base: SubgraphContext, req: IncomingMessage) => TContext | Promise<TContext>;
  readiness?: ReadinessCheck[];
  plugins?: ApolloServerPlugin<TContext>[];
  /** Transform the built schema (e.g. apply graphql-rate-limit's directive). */
  transformSchema?: (schema: GraphQLSchema) => GraphQLSchema;
  /**
   * Runs last when the service closes, also after a `start()` that failed or never came (Apollo
   * then not stopped): close pools here.
   */
  onClose?: () => Promise<void>;
  /**
   * Background jobs that run while the service serves: started once it listens, stopped as it
   * closes (no run starts after). A run in progress is waited for while requests drain, before
   * `onClose` (the pools), within `shutdownTimeoutMs` of the close: one still running then (a
   * stuck query) is abandoned with a `warn` naming its job, and shutdown goes on. @default none
   */
  jobs?: PeriodicJob[];
  /** Largest accepted request body. @default 1 MiB */
  maxBodyBytes?: number;
  /** Introspection is on for subgraphs (the router needs `_service`), off for clients at the router. @default true */
  introspection?: boolean;
  /**
   * Extra HTTP routes served beside `/graphql`, keyed by exact path (e.g. the auth
   * service's `/.well-known/jwks.json`). The handler checks the method itself. @default {}
   */
  routes?: Record<string, RequestHandler>;
  /** Handles WebSocket upgrades (e.g. graphql-ws subscriptions on `/graphql`); passed to createServiceServer. */
  onUpgrade?: ServiceServerOptions['onUpgrade'];
  /**
   * Serve HTTPS (and demand the router's client certificate when `TLS_CLIENT_CA_FILE` is set);
   * renewed certificate files are picked up without a restart. @default plain HTTP
   */
  tls?: ServerTlsConfig;
}

export interface SubgraphService<TContext extends SubgraphContext> extends ServiceServer {
  readonly apollo: ApolloServer<TContext>;
  /** The executable subgraph schema (after `transformSchema`), e.g. for a graphql-ws server. */
  readonly schema: GraphQLSchema;
  /** Starts Apollo Server, then listens. */
  start(port: number, host?: string): Promise<string>;
}

/**
 * Builds a federation subgraph behind the platform HTTP bootstrap, without listening.
 * The forwarded JWT is verified again here: an invalid token is UNAUTHENTICATED even
 * when the router let the request through. Every answer on `/graphql` (and the 404 of any path
 * no route serves) says `cache-control: no-store`; an extra route sets its own.
 */
export function createSubgraphService<TContext extends SubgraphContext>(
  options: SubgraphServiceOptions<TContext>,
): SubgraphService<TContext> {
  let schema = buildSubgraphSchema([{ typeDefs: options.typeDefs, resolvers: options.resolvers as GraphQLResolverMap<unknown> }]);
  if (options.transformSchema) schema = options.transformSchema(schema);
  const apollo = new ApolloServer<TContext>({
    schema,
    introspection: options.introspection ?? true,
    includeStacktraceInErrorResponses: false,
    formatError: formatGraphQLError,
    csrfPrevention: true,
    // Shutdown belongs to the composition root (exitOnSignals → server.close drains requests and
    // workers). Apollo's own SIGTERM handler would stop Apollo and re-raise the signal, killing
    // the process (exit 143) before the graceful close ran; it is off only under NODE_ENV=test.
    stopOnTerminationSignals: false,
    plugins: [
      ApolloServerPluginLandingPageDisabled(),
      ApolloServerPluginInlineTraceDisabled(),
      // No schema here has @cacheControl and everything is per caller (the GraphQL handler answers
      // every request `cache-control: no-store`): Apollo's default cache-control plugin only cost a
      // hook on every resolved field.
      ApolloServerPluginCacheControlDisabled(),
      logUnexpectedErrors(options.logger),
      ...(options.plugins ?? []),
    ],
  });
  const handler = createGraphQLHandler(apollo, {
    maxBodyBytes: options.maxBodyBytes,
    context: async (req) => {
      const requestId = requestIdOf(req);
      const logger = options.logger.child({ requestId });
      const principal = await options.verifier.verifyAuthorization(req.headers.authorization).catch((error: unknown) => {
        // Apollo answers an error thrown while building the context with HTTP 500 unless it
        // carries a status. A refused token is the caller's 401, not a failing subgraph: with
        // 500 the router would report SUBGRAPH_UNAVAILABLE and count it towards opening the
        // breaker (a router/subgraph key mismatch would take the subgraph out for everyone).
        if (error instanceof GhostPayError) error.extensions.http = { status: httpStatusFor(String(error.extensions.code)) };
        throw error;
      });
      const base: SubgraphContext = { principal, requestId, logger };
      return options.extendContext ? options.extendContext(base, req) : (base as TContext);
    },
  });
  const routes = options.routes ?? {};
  const server = createServiceServer({
    tlsFiles: options.tls,
    service: options.name,
    logger: options.logger,
    registry: options.registry,
    // Metrics label these paths as themselves and any other path `unmatched`.
    knownRoutes: ['/graphql', ...Object.keys(routes)],
    handler: (req, res) => {
      const path = (req.url ?? '/').split('?')[0] ?? '/';
      const route = Object.hasOwn(routes, path) ? routes[path] : undefined;
      return route ? route(req, res) : handler(req, res);
    },
    readiness: options.readiness,
    // `shutdownTimeoutMs`, `maxConnections` and any other base server setting (`serviceServerOptionsFrom`).
    ...baseServerOptionsOf(options),
    onUpgrade: options.onUpgrade,
    onClose: async () => {
      await jobsStopped;
      try {
        // Apollo refuses stop() unless its start succeeded: after a failed start, or none, there is
        // nothing of it to stop, and the service's own resources must still be closed.
        const started = apolloStart
          ? await apolloStart.then(
              () => true,
              () => false,
            )
          : false;
        if (started) await apollo.stop();
      } finally {
        await options.onClose?.();
      }
    },
  });
  const jobs = options.jobs ?? [];
  const shutdownTimeoutMs = options.shutdownTimeoutMs ?? defaultShutdownTimeoutMs;
  const closeServer = server.close;
  let closing: Promise<void> | undefined;
  let apolloStart: Promise<void> | undefined;
  let jobsStopped: Promise<unknown> = Promise.resolve();
  return Object.assign(server, {
    apollo,
    schema,
    async start(port: number, host?: string) {
      apolloStart ??= apollo.start();
      await apolloStart;
      await server.listen(port, host);
      for (const job of jobs) job.start();
      return server.url;
    },
    close() {
      closing ??= (async () => {
        // Stopped at once, waited for (bounded) while the server drains: the same deadline as the drain.
        jobsStopped = stopPeriodicJobs(jobs, shutdownTimeoutMs, options.logger);
        await closeServer();
      })();
      return closing;
    },
  });
}

/** The caller, or UNAUTHENTICATED. */
export function requirePrincipal(context: { principal?: Principal }): Principal {
  if (!context.principal) throw new UnauthenticatedError();
  return context.principal;
}

/** The caller holding `scope`, or UNAUTHENTICATED / FORBIDDEN. */
export function requireScope(context: { principal?: Principal }, scope: string): Principal {
  const principal = requirePrincipal(context);
  if (!hasScope(principal, scope)) throw new ForbiddenError(`Requires scope ${scope}`);
  return principal;
}

/**
 * Clients see an unexpected error only as INTERNAL_SERVER_ERROR (formatGraphQLError); the
 * operator needs the cause. Logs every error whose code is not from the closed list, with
 * the request id, the path and the error (pino serialises the stack; never the variables, and
 * the logger's `err` serializer drops the values bound to a failed query: see logger.ts).
 */
function logUnexpectedErrors<TContext extends BaseContext>(logger: Logger): ApolloServerPlugin<TContext> {
  return {
    async requestDidStart() {
      return {
        async didEncounterErrors({ errors, contextValue, operationName }) {
          for (const error of errors) {
            const code = error.extensions?.code;
            if (isErrorCode(code) && code !== 'INTERNAL_SERVER_ERROR') continue;
            const requestId = (contextValue as Partial<SubgraphContext> | undefined)?.requestId;
            logger.error(
              { err: error.originalError ?? error, requestId, operationName, path: error.path },
              'unexpected error while executing an operation',
            );
          }
        },
      };
    },
  };
}
