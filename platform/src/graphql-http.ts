import type { IncomingMessage, ServerResponse } from 'node:http';
import { type ApolloServer, type BaseContext, HeaderMap } from '@apollo/server';
import { ErrorCode } from './errors.ts';
import { BodyTooLargeError, readBody, sendJson } from './http-server.ts';

export interface GraphQLHandlerOptions<TContext extends BaseContext> {
  /** Builds the per-request context (principal, loaders, request id). Errors it throws become GraphQL errors. */
  context: (req: IncomingMessage) => Promise<TContext>;
  /** Largest accepted request body. @default 1 MiB */
  maxBodyBytes?: number;
  /** Path the handler answers on. @default '/graphql' */
  path?: string;
}

/**
 * Serves an Apollo Server over plain `node:http` through `executeHTTPGraphQLRequest`,
 * the official integration API; no framework in between. Every answer says
 * `cache-control: no-store`.
 */
export function createGraphQLHandler<TContext extends BaseContext>(
  server: ApolloServer<TContext>,
  { context, maxBodyBytes = 1024 * 1024, path = '/graphql' }: GraphQLHandlerOptions<TContext>,
) {
  return async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    // Every answer of the handler, this function's own refusals (404, 413, 400) and Apollo's alike,
    // is about one caller's request (a card, a charge, an access token): nothing between the
    // service and its caller (a proxy, a mesh sidecar, an HTTP cache) may keep it. Set first, so a
    // 500 the server's bootstrap sends after a throw carries it too (writeHead merges it); a
    // header Apollo's response names (a plugin's) replaces it. One header per request.
    res.setHeader('cache-control', 'no-store');
    // `URL.parse`: Node accepts request targets such as `//[` that are no URL (and `new URL` throws).
    const url = URL.parse(req.url ?? '/', 'http://localhost');
    if (url?.pathname !== path) {
      sendJson(res, 404, { error: { code: 'NOT_FOUND', message: 'Not found' } });
      return;
    }
    let raw: Buffer;
    try {
      raw = await readBody(req, maxBodyBytes);
    } catch (error) {
      if (error instanceof BodyTooLargeError) {
        // The rest of the body is not worth reading: the socket closes after the 413, as the router's does.
        res.setHeader('connection', 'close');
        sendJson(res, 413, { errors: [{ message: error.message, extensions: { code: 'PAYLOAD_TOO_LARGE' } }] });
        return;
      }
      throw error;
    }
    const headers = new HeaderMap();
    for (const [key, value] of Object.entries(req.headers)) {
      if (value !== undefined) headers.set(key, Array.isArray(value) ? value.join(', ') : value);
    }
    let body: unknown;
    const contentType = headers.get('content-type') ?? '';
    if (raw.length > 0 && contentType.includes('json')) {
      try {
        body = JSON.parse(raw.toString('utf8'));
      } catch {
        sendJson(res, 400, {
          errors: [{ message: 'Request body is not valid JSON', extensions: { code: ErrorCode.GRAPHQL_PARSE_FAILED } }],
        });
        return;
      }
    } else if (raw.length > 0) {
      body = raw.toString('utf8');
    }
    const response = await server.executeHTTPGraphQLRequest({
      httpGraphQLRequest: { method: req.method ?? 'GET', headers, search: url.search, body },
      context: () => context(req),
    });
    const outHeaders: Record<string, string> = {};
    for (const [key, value] of response.headers) outHeaders[key] = value;
    res.statusCode = response.status ?? 200;
    for (const [key, value] of Object.entries(outHeaders)) res.setHeader(key, value);
    if (response.body.kind === 'complete') {
      res.end(response.body.string);
      return;
    }
    for await (const chunk of response.body.asyncIterator) res.write(chunk);
    res.end();
  };
}
