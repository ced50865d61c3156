import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import {
  atExpiry,
  ErrorCode,
  formatGraphQLError,
  isErrorCode,
  type JwtVerifier,
  type Principal,
  requestIdOf,
  type SubgraphContext,
} from '@ghostpay/platform';
import {
  createSourceEventStream,
  type DocumentNode,
  type ExecutionArgs,
  type ExecutionResult,
  execute,
  type FieldNode,
  type FragmentDefinitionNode,
  GraphQLError,
  GraphQLIncludeDirective,
  type GraphQLSchema,
  GraphQLSkipDirective,
  getArgumentValues,
  getDirectiveValues,
  getOperationAST,
  getVariableValues,
  Kind,
  parse,
  type SelectionSetNode,
  validate,
} from 'graphql';
import { CloseCode, handleProtocols, makeServer, type SubscribePayload } from 'graphql-ws';
import type { Logger } from 'pino';
import { type WebSocket, WebSocketServer } from 'ws';
import type { ChargeLookups } from './charge-queries.ts';
import { type ChargesContext, createLoaders } from './resolvers.ts';

/** `error` again, under a code from the closed list (message and locations kept). */
function withCode(error: GraphQLError, code: ErrorCode): GraphQLError {
  return new GraphQLError(error.message, {
    nodes: error.nodes,
    source: error.source,
    positions: error.positions,
    extensions: { code },
  });
}

const subscriptionsOnly = 'Only subscriptions are served over WebSocket; send queries and mutations to POST /graphql';

/**
 * What graphql-ws would do before executing an operation (parse, validate, pick the
 * operation), plus coercing its variables, each failure under the code Apollo gives it over
 * HTTP: GRAPHQL_PARSE_FAILED, GRAPHQL_VALIDATION_FAILED, BAD_USER_INPUT; and a query or a
 * mutation refused (BAD_USER_INPUT): only subscriptions are served here. Left to graphql-ws,
 * validation and variable errors carry no code (formatted as INTERNAL_SERVER_ERROR) and a
 * syntax error closes the whole socket (4500).
 */
function prepareOperation(schema: GraphQLSchema, payload: SubscribePayload): ExecutionArgs | readonly GraphQLError[] {
  let document: DocumentNode;
  try {
    document = parse(payload.query);
  } catch (error) {
    if (error instanceof GraphQLError) return [withCode(error, ErrorCode.GRAPHQL_PARSE_FAILED)];
    throw error;
  }
  const invalid = validate(schema, document);
  if (invalid.length > 0) return invalid.map((error) => withCode(error, ErrorCode.GRAPHQL_VALIDATION_FAILED));
  const operationName = payload.operationName ?? undefined;
  const operation = getOperationAST(document, operationName);
  if (!operation) {
    const message = operationName ? `Unknown operation named "${operationName}"` : 'The document must name the operation to run';
    return [new GraphQLError(message, { extensions: { code: ErrorCode.BAD_USER_INPUT } })];
  }
  // graphql-ws would execute queries and mutations too, as the principal of `connection_init`,
  // which is never verified again: a socket would go on refunding after its token expired.
  if (operation.operation !== 'subscription') {
    return [new GraphQLError(subscriptionsOnly, { extensions: { code: ErrorCode.BAD_USER_INPUT } })];
  }
  const variableValues = payload.variables ?? undefined;
  const coerced = getVariableValues(schema, operation.variableDefinitions ?? [], variableValues ?? {}, { maxErrors: 10 });
  if (coerced.errors) return coerced.errors.map((error) => withCode(error, ErrorCode.BAD_USER_INPUT));
  // Validation lets a nullable variable with a default stand where the argument is non-null
  // (`$id: ID = "x"` for `id: ID!`), so an explicit `null` for it passes both steps above and
  // only fails when graphql-js reads the root field's arguments, as an error without a code
  // (INTERNAL_SERVER_ERROR, logged as unexpected). Read them here, as the router's planning does.
  const fragmentDefinitions = document.definitions.filter((d): d is FragmentDefinitionNode => d.kind === Kind.FRAGMENT_DEFINITION);
  const fragments = new Map(fragmentDefinitions.map((fragment) => [fragment.name.value, fragment]));
  const subscriptionType = schema.getSubscriptionType();
  for (const field of rootFields(operation.selectionSet, fragments, coerced.coerced, new Set())) {
    const fieldDef = subscriptionType?.getFields()[field.name.value];
    if (!fieldDef) continue;
    try {
      getArgumentValues(fieldDef, field, coerced.coerced);
    } catch (error) {
      if (!(error instanceof GraphQLError)) throw error;
      return [withCode(error, ErrorCode.BAD_USER_INPUT)];
    }
  }
  return { schema, document, operationName, variableValues };
}

/** The fields a selection set selects at its level (through fragments), those `@skip`/`@include` leave in. */
function rootFields(
  selectionSet: SelectionSetNode,
  fragments: ReadonlyMap<string, FragmentDefinitionNode>,
  variables: Record<string, unknown>,
  visited: Set<string>,
): FieldNode[] {
  const fields: FieldNode[] = [];
  for (const selection of selectionSet.selections) {
    if (getDirectiveValues(GraphQLSkipDirective, selection, variables)?.if === true) continue;
    if (getDirectiveValues(GraphQLIncludeDirective, selection, variables)?.if === false) continue;
    if (selection.kind === Kind.FIELD) fields.push(selection);
    else if (selection.kind === Kind.INLINE_FRAGMENT) fields.push(...rootFields(selection.selectionSet, fragments, variables, visited));
    else if (!visited.has(selection.name.value)) {
      visited.add(selection.name.value);
      const fragment = fragments.get(selection.name.value);
      if (fragment) fields.push(...rootFields(fragment.selectionSet, fragments, variables, visited));
    }
  }
  return fields;
}

/**
 * graphql-js's `subscribe`, except that each event is executed with its own context (`contextFor`):
 * `subscribe` executes every event with the one context of the subscription, whose DataLoaders
 * cache what the first event read, so nested fields (`card { charges { status } }`) kept their
 * first value on every later event. An HTTP request gets fresh loaders; so does each event.
 * `return()` reaches the source at once, even while it waits for an event (client `complete`).
 */
async function subscribePerEvent(
  args: ExecutionArgs,
  contextFor: () => unknown,
): Promise<AsyncGenerator<ExecutionResult, undefined, unknown> | ExecutionResult> {
  const source = await createSourceEventStream(args);
  if (!(Symbol.asyncIterator in source)) return source;
  const events = source[Symbol.asyncIterator]();
  const stop = async () => {
    await events.return?.();
  };
  const mapped: AsyncGenerator<ExecutionResult, undefined, unknown> = {
    async next() {
      const event = await events.next();
      if (event.done) return { done: true, value: undefined };
      try {
        return { done: false, value: await execute({ ...args, rootValue: event.value, contextValue: contextFor() }) };
      } catch (error) {
        await stop();
        throw error;
      }
    },
    async return() {
      await stop();
      return { done: true, value: undefined };
    },
    async throw(error?: unknown) {
      await stop();
      throw error;
    },
    [Symbol.asyncIterator]() {
      return mapped;
    },
    async [Symbol.asyncDispose]() {
      await stop();
    },
  };
  return mapped;
}

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
  /**
   * WebSocket ping interval; a peer whose pong has not come back one interval later is
   * terminated (a dead peer or half-open TCP connection would otherwise hold its subscriptions
   * and a connection slot for ever). @default 12000
   */
  keepAliveMs?: number;
  /** A socket that has not sent `connection_init` this long after opening is closed (4408). @default 3000 */
  connectionInitTimeoutMs?: number;
  /**
   * Subscriptions one socket may hold at once; a subscribe past it gets OPERATION_LIMIT_EXCEEDED
   * and the socket's other subscriptions go on. The router multiplexes up to its
   * ROUTER_SUBSCRIPTION_UPSTREAM_SOCKET_CAPACITY (500) on one socket: keep this above it. The
   * router refuses a capacity above 1000 (bounded 1..1000), so lowering this below 500 needs the
   * router's capacity lowered too.
   * @default 1000
   */
  maxSubscriptionsPerSocket?: number;
}

/** Close code and reason of a socket whose `connection_init` token expired (graphql-ws Forbidden). */
export const tokenExpiredClose = { code: 4403, reason: 'Token expired' } as const;

/**
 * graphql-ws (`graphql-transport-ws`) on the same path as HTTP GraphQL. The caller is
 * authenticated once per connection from `connection_init` `{ authorization: "Bearer ..." }`
 * or the upgrade request's Authorization header; a missing or invalid token closes the
 * socket with 4403. Each subscription is then authorized by its resolver like HTTP requests.
 * The socket lives no longer than that token: at its expiry it is closed with
 * {@link tokenExpiredClose} (4403 "Token expired"), and a client reconnects with a fresh one.
 * Queries and mutations are refused (BAD_USER_INPUT): the token is not verified again on this
 * socket, so they would outlive its expiry; they belong on POST /graphql.
 */
export function createSubscriptionServer(options: SubscriptionServerOptions): SubscriptionServer {
  const path = options.path ?? '/graphql';
  const wss = new WebSocketServer({ noServer: true, maxPayload: options.maxPayloadBytes ?? 64 * 1024 });
  const principals = new WeakMap<object, Principal>();
  const maxPerSocket = options.maxSubscriptionsPerSocket ?? 1_000;
  const tooMany = () => [
    new GraphQLError(`At most ${maxPerSocket} subscriptions per socket; open another socket or end one first`, {
      extensions: { code: ErrorCode.OPERATION_LIMIT_EXCEEDED },
    }),
  ];
  /**
   * Same error shape as HTTP: closed list of codes, never internals. An error outside the closed
   * list (a database error of the subscribe resolver or of a later read) reaches the client as
   * INTERNAL_SERVER_ERROR, so its cause is logged here, as the HTTP path's plugin logs it.
   */
  const format = (error: GraphQLError) => {
    const code = error.extensions?.code;
    if (!isErrorCode(code) || code === ErrorCode.INTERNAL_SERVER_ERROR) {
      options.logger.error({ err: error.originalError ?? error, path: error.path }, 'unexpected error in a subscription');
    }
    return formatGraphQLError(error.toJSON(), error);
  };

  const server = makeServer<Record<string, unknown> | undefined, SocketExtra>({
    schema: options.schema,
    connectionInitWaitTimeout: options.connectionInitTimeoutMs ?? 3_000,
    // graphql-ws skips its own parse and validation when this returns execution arguments.
    // graphql-ws has registered this id in `ctx.subscriptions` already (and removes it when the
    // subscription ends, however it ends), so that count includes this one. graphql-ws also
    // forgets an id on the client's `complete` at once, while the subscribe may still be pending
    // (its first read waiting on a slow database): those still being handled (`running`, which
    // this one joins once this returns) count too, up to as many again, so one socket cannot pile
    // them up, while a client that ends one and starts another at once is not refused for the few
    // ticks the ended one takes to wind down.
    onSubscribe: (ctx, _id, payload) =>
      Object.keys(ctx.subscriptions).length > maxPerSocket || ctx.extra.running.size >= 2 * maxPerSocket
        ? tooMany()
        : prepareOperation(options.schema, payload),
    async onConnect(ctx) {
      const fromPayload = ctx.connectionParams?.authorization;
      const header = typeof fromPayload === 'string' ? fromPayload : ctx.extra.request.headers.authorization;
      let principal: Principal | undefined;
      try {
        principal = await options.verifier.verifyAuthorization(header);
      } catch {
        return false;
      }
      if (!principal) return false;
      // The socket is authorised until the token expires, not for ever. (The verifier accepts a
      // token up to its clock tolerance past `exp`; a socket opened with one is refused here.)
      // `!(… > 0)`: an expiry that is not a number (NaN) is refused too, never armed as a 1 ms timer.
      const expiresAtMs = principal.expiresAt * 1000;
      if (!(expiresAtMs - Date.now() > 0)) return false;
      const socket = ctx.extra.socket;
      // Closed while its token was being verified: its 'close' has been emitted already, so a
      // timer armed now would never be cleared and would hold the socket until the expiry.
      if (socket.readyState !== socket.OPEN) return false;
      principals.set(socket, principal);
      // Far expiries are waited for in steps (atExpiry): a Node timer cannot wait past about 24.8 days.
      socket.once(
        'close',
        atExpiry(principal, () => socket.close(tokenExpiredClose.code, tokenExpiredClose.reason)),
      );
      return true;
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
    // The subscribe resolver gets the context above; each event its own loaders, as a request does.
    subscribe: (args) => {
      const base = args.contextValue as ChargesContext;
      return subscribePerEvent(args, (): ChargesContext => ({ ...base, ...createLoaders(options.lookups, base) }));
    },
    // Errors from `prepareOperation` carry their code; what else arrives here wraps an exception.
    onError: (_ctx, _id, _payload, errors) => errors.map(format),
    onNext: (_ctx, _id, _payload, _args, result) => (result.errors ? { ...result, errors: result.errors.map(format) } : undefined),
  });
  serveSockets(wss, server, options.logger, options.keepAliveMs ?? 12_000);

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
      for (const client of wss.clients) client.close(1001, 'Going away');
      wss.removeAllListeners();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
      for (const client of wss.clients) client.terminate();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
    },
  };
}

interface SocketExtra {
  socket: WebSocket;
  request: IncomingMessage;
  /** Ids of the socket's subscribes whose handling has not ended, each with the handling's promise. */
  running: Map<string, Promise<void>>;
}

/**
 * graphql-ws's `useServer` (graphql-ws/use/ws) for `server`, except in one respect: a `subscribe`
 * reusing the id of a subscribe whose handling has not ended closes the socket with 4409
 * "Subscriber for <id> already exists". graphql-ws forgets an id as soon as the client sends
 * `complete` for it, even while that subscribe is still pending (its authorization or first read
 * not done); the id sent again then ran a second operation beside the first under one id (the
 * first event twice; a `complete` ended only one of them, the other held its listener until the
 * socket closed). The promise of graphql-ws's message callback ends when the operation has
 * (its documented contract), so it is what says an id is free again. graphql-ws's own clients
 * never reuse an id. Plus: errors are logged through `logger` and never sent as a close reason.
 */
function serveSockets(
  wss: WebSocketServer,
  server: ReturnType<typeof makeServer<Record<string, unknown> | undefined, SocketExtra>>,
  logger: Logger,
  keepAliveMs: number,
) {
  wss.options.handleProtocols = handleProtocols;
  const internalError = (socket: WebSocket) => socket.close(CloseCode.InternalServerError, 'Internal server error');
  wss.on('error', (error) => {
    logger.error({ err: error }, 'subscription WebSocket server error');
    for (const client of wss.clients) internalError(client);
  });
  wss.on('connection', (socket: WebSocket, request: IncomingMessage) => {
    socket.once('error', (error) => {
      logger.warn({ err: error }, 'subscription socket error');
      internalError(socket);
    });
    // A ping every keepAliveMs; a peer whose pong has not come back one interval later is terminated.
    let pongWait: NodeJS.Timeout | undefined;
    const pingInterval = setInterval(() => {
      if (socket.readyState !== socket.OPEN) return;
      pongWait = setTimeout(() => socket.terminate(), keepAliveMs);
      socket.once('pong', () => clearTimeout(pongWait));
      socket.ping();
    }, keepAliveMs);
    let handle: ((data: string) => Promise<void>) | undefined;
    const running: SocketExtra['running'] = new Map();
    const closed = server.opened(
      {
        protocol: socket.protocol,
        send: (data) =>
          new Promise<void>((resolve, reject) => {
            if (socket.readyState !== socket.OPEN) return resolve();
            socket.send(data, (error) => (error ? reject(error) : resolve()));
          }),
        close: (code, reason) => socket.close(code, reason),
        onMessage: (callback) => {
          handle = callback;
        },
      },
      { socket, request, running },
    );
    socket.on('message', (raw) => {
      const data = String(raw);
      const id = subscribeIdOf(data);
      if (id !== undefined && running.has(id)) return socket.close(CloseCode.SubscriberAlreadyExists, alreadyExists(id));
      const handling = (handle?.(data) ?? Promise.resolve()).catch((error: unknown) => {
        logger.error({ err: error }, 'unexpected error handling a subscription socket message');
        internalError(socket);
      });
      if (id === undefined) return;
      running.set(id, handling);
      void handling.finally(() => {
        if (running.get(id) === handling) running.delete(id);
      });
    });
    socket.once('close', (code, reason) => {
      clearTimeout(pongWait);
      clearInterval(pingInterval);
      void closed(code, String(reason));
    });
  });
}

/**
 * The 4409 reason, "Subscriber for <id> already exists". The id is the client's and a close
 * reason holds at most 123 bytes (ws throws on a longer one, which here, in the socket's message
 * listener, was an uncaught exception): a longer one names no id.
 */
function alreadyExists(id: string): string {
  const reason = `Subscriber for ${id} already exists`;
  return Buffer.byteLength(reason) <= 123 ? reason : 'Subscriber for this id already exists';
}

/** The id of a `subscribe` message; undefined for anything else (graphql-ws judges those). */
function subscribeIdOf(data: string): string | undefined {
  // Every message is parsed, not only those whose text says "subscribe": JSON may spell the
  // type with escapes (\u0073ubscribe), and graphql-ws reads what JSON.parse reads.
  let message: unknown;
  try {
    message = JSON.parse(data);
  } catch {
    return undefined;
  }
  if (typeof message !== 'object' || message === null) return undefined;
  const { type, id } = message as { type?: unknown; id?: unknown };
  return type === 'subscribe' && typeof id === 'string' ? id : undefined;
}
