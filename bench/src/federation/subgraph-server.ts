import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type GraphQLSchema, parse, validate } from 'graphql';
import { type CompiledQuery, compileQuery, isCompiledQuery } from 'graphql-jit';
import { buildBenchSubgraphSchemas } from './subgraphs.ts';

/**
 * The four benchmark subgraphs on one node:http server (`/accounts`, `/inventory`, `/products`,
 * `/reviews`), built to be cheap so the gateways are what is measured (the public benchmark
 * uses Rust subgraphs for the same reason): each distinct query string is parsed, validated and
 * compiled with graphql-jit once, then every request is executed and serialized by the compiled
 * query. Responses are computed per request, never cached.
 */
export async function startBenchSubgraphs(port = 0): Promise<{ url: string; server: Server; close(): Promise<void> }> {
  const schemas = buildBenchSubgraphSchemas();
  const documents = new Map<string, { schema: GraphQLSchema; compiled?: CompiledQuery; error?: string }>();
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', async () => {
      const name = (req.url ?? '/').slice(1).split('?')[0] ?? '';
      const schema = schemas[name];
      const send = (status: number, body: unknown) => {
        const text = JSON.stringify(body);
        res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
        res.end(text);
      };
      if (!schema || req.method !== 'POST') return send(404, { errors: [{ message: 'not found' }] });
      let body: { query?: string; variables?: Record<string, unknown>; operationName?: string };
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch {
        return send(400, { errors: [{ message: 'bad json' }] });
      }
      const key = `${name}\n${body.query}`;
      let entry = documents.get(key);
      if (!entry) {
        try {
          const document = parse(String(body.query));
          const errors = validate(schema, document);
          const compiled = errors.length ? undefined : compileQuery(schema, document, body.operationName ?? undefined);
          if (errors.length) entry = { schema, error: errors[0]?.message };
          else if (compiled && isCompiledQuery(compiled)) entry = { schema, compiled };
          else entry = { schema, error: (compiled as { errors?: { message: string }[] })?.errors?.[0]?.message ?? 'compile failed' };
        } catch (error) {
          entry = { schema, error: (error as Error).message };
        }
        if (documents.size < 1000) documents.set(key, entry);
      }
      if (!entry.compiled) return send(400, { errors: [{ message: entry.error }] });
      const result = await entry.compiled.query(undefined, {}, body.variables ?? {});
      const text = entry.compiled.stringify(result);
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
      res.end(text);
    });
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  const { port: bound } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${bound}`,
    server,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
