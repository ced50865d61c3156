import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { connect } from 'node:net';
import { capturingLogger, createSeed, createTestTokenIssuer, freshDatabase, rawHttpRequest } from '@ghostpay/test-support';
import { parse } from 'graphql';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  baseConfigSchema,
  createLogger,
  createMetricsRegistry,
  createPeriodicJob,
  createSubgraphService,
  NotFoundError,
  parseConfig,
  type SubgraphService,
  sendJson,
  serviceServerOptionsFrom,
} from '../src/index.ts';

let service: SubgraphService<never> | undefined;
afterEach(async () => {
  await service?.close();
  service = undefined;
});

/** A one-type demo subgraph on port 0 (`service`, closed after each test); resolves with its URL. */
async function startDemo(
  queryFields: string,
  resolvers: Record<string, () => unknown>,
  logger = createLogger({ service: 'demo', level: 'silent' }),
) {
  const issuer = await createTestTokenIssuer();
  service = createSubgraphService({
    name: 'demo',
    typeDefs: parse(`
      extend schema @link(url: "https://specs.apollo.dev/federation/v2.9", import: ["@key"])
      type Query { ${queryFields} }
    `),
    resolvers: { Query: resolvers },
    verifier: issuer.verifier,
    logger,
    registry: createMetricsRegistry('demo'),
  }) as SubgraphService<never>;
  return service.start(0);
}

describe('subgraph service', () => {
  it('runs its jobs only while it serves: started once it listens, stopped (a run in progress finished) on close', async () => {
    const logger = createLogger({ service: 'demo', level: 'silent' });
    let runs = 0;
    let inProgress = false;
    const job = createPeriodicJob({
      name: 'demo-job',
      intervalMs: 20,
      logger,
      run: async () => {
        inProgress = true;
        await new Promise((resolve) => setTimeout(resolve, 30));
        runs++;
        inProgress = false;
        return 1;
      },
    });
    const demo = createSubgraphService({
      name: 'demo',
      typeDefs: parse('type Query { ok: Boolean }'),
      resolvers: { Query: { ok: () => true } },
      verifier: (await createTestTokenIssuer()).verifier,
      logger,
      registry: createMetricsRegistry('demo'),
      jobs: [job],
    });
    expect(job.running).toBe(false);
    await demo.start(0);
    expect(job.running).toBe(true);
    while (!inProgress) await new Promise((resolve) => setTimeout(resolve, 5));
    await demo.close();
    expect(job.running).toBe(false);
    expect(inProgress).toBe(false);
    const after = runs;
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(runs).toBe(after);
  });

  it('answers an unexpected error as INTERNAL_SERVER_ERROR without details, logs its cause, and passes known codes through', async () => {
    const log = capturingLogger('demo');
    const url = await startDemo(
      'broken: String missing: String',
      {
        broken: () => {
          throw new Error('connection to 10.0.0.7 refused while reading secret table');
        },
        missing: () => {
          throw new NotFoundError('Thing', 'th_1');
        },
      },
      log.logger,
    );
    const response = await fetch(`${url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-request-id': 'req-42' },
      body: JSON.stringify({ query: '{ broken missing }' }),
    });
    const body = (await response.json()) as { errors: Array<{ message: string; path: string[]; extensions: Record<string, unknown> }> };
    const byPath = Object.fromEntries(body.errors.map((e) => [e.path[0], e]));
    expect(byPath.broken).toEqual({ message: 'Internal server error', path: ['broken'], extensions: { code: 'INTERNAL_SERVER_ERROR' } });
    expect(byPath.missing).toMatchObject({ message: 'Thing th_1 not found', extensions: { code: 'NOT_FOUND' } });
    expect(JSON.stringify(body)).not.toContain('10.0.0.7');
    const logged = log.parsed().filter((line) => line.msg === 'unexpected error while executing an operation');
    expect(logged).toHaveLength(1);
    expect(logged[0]).toMatchObject({ requestId: 'req-42', path: ['broken'], err: { message: expect.stringContaining('10.0.0.7') } });
  });
});

describe('subgraph service server settings', () => {
  it('takes the base server settings from a config built on the base schema', async () => {
    const parsed = parseConfig(baseConfigSchema, { MAX_CONNECTIONS: '9' });
    if (!parsed.ok) throw new Error(parsed.problems.join('\n'));
    // Built, not started: nothing to close.
    const demo = createSubgraphService({
      name: 'demo',
      typeDefs: parse('type Query { ok: Boolean }'),
      resolvers: { Query: { ok: () => true } },
      verifier: (await createTestTokenIssuer()).verifier,
      logger: createLogger({ service: 'demo', level: 'silent' }),
      registry: createMetricsRegistry('demo'),
      ...serviceServerOptionsFrom(parsed.config),
    });
    expect(demo.server.maxConnections).toBe(9);
  });
});

describe('subgraph service metrics', () => {
  it('labels /graphql and its extra routes as themselves and every other path `unmatched`', async () => {
    const issuer = await createTestTokenIssuer();
    service = createSubgraphService({
      name: 'demo',
      typeDefs: parse('type Query { hello: String }'),
      resolvers: { Query: { hello: () => 'hi' } },
      verifier: issuer.verifier,
      logger: createLogger({ service: 'demo', level: 'silent' }),
      registry: createMetricsRegistry('demo'),
      routes: { '/.well-known/jwks.json': (_req, res) => sendJson(res, 200, { keys: [] }) },
    }) as SubgraphService<never>;
    const url = await service.start(0);
    await fetch(`${url}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"query":"{ hello }"}' });
    for (const path of ['/.well-known/jwks.json', '/healthz', '/x1', '/x2', '/a4111111111111111', '/graphql/x']) {
      await (await fetch(`${url}${path}`)).arrayBuffer();
    }
    const metrics = await (await fetch(`${url}/metrics`)).text();
    const routes = new Set([...metrics.matchAll(/^http_request_duration_seconds_count\{[^}]*route="([^"]*)"/gm)].map((m) => m[1]));
    expect([...routes].sort()).toEqual(['/.well-known/jwks.json', '/graphql', '/healthz', 'unmatched']);
  });
});

describe('subgraph service when a query fails', () => {
  it('logs the failed query and its constraint, never the values bound to it', async () => {
    const database = await freshDatabase();
    try {
      const seed = createSeed(database.db);
      const email = `taken-${randomBytes(4).toString('hex')}@example.test`;
      await seed.user('merchant', { email });
      const { logger, lines } = capturingLogger('demo');
      const url = await startDemo(
        'signUp: String',
        { signUp: async () => (await seed.user('merchant', { email, name: 'Jane Private' })).id },
        logger,
      );
      const response = await fetch(`${url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ query: '{ signUp }' }),
      });
      expect(((await response.json()) as { errors: Array<{ extensions: { code: string } }> }).errors[0]?.extensions.code).toBe(
        'INTERNAL_SERVER_ERROR',
      );
      const logged = lines.filter((line) => line.includes('unexpected error while executing an operation'));
      expect(logged).toHaveLength(1);
      expect(logged[0]).not.toContain(email);
      expect(logged[0]).not.toContain('Jane Private');
      expect(JSON.parse(logged[0]!).err.message).toMatch(/insert into "auth"."users".*users_email_lower_key/s);
    } finally {
      await database.close();
    }
  });
});

describe('subgraph service request errors', () => {
  it('answers malformed requests with 400 and a code from the closed list', async () => {
    const url = await startDemo('hello: String', { hello: () => 'hi' });
    const post = async (body: string) => {
      const response = await fetch(`${url}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
      return {
        status: response.status,
        body: (await response.json()) as { errors?: Array<{ message: string; extensions?: { code?: string } }> },
      };
    };
    const cases: Array<[string, string]> = [
      ['{"query": ', 'GRAPHQL_PARSE_FAILED'],
      ['{}', 'BAD_USER_INPUT'],
      ['{"query": "{ hello"}', 'GRAPHQL_PARSE_FAILED'],
      ['{"query": "{ nope }"}', 'GRAPHQL_VALIDATION_FAILED'],
      // Apollo's OPERATION_RESOLUTION_FAILURE: the client named no operation, or one the document lacks.
      ['{"query": "query A { hello } query B { hello }"}', 'BAD_USER_INPUT'],
      ['{"query": "query A { hello }", "operationName": "C"}', 'BAD_USER_INPUT'],
    ];
    for (const [body, code] of cases) {
      const answer = await post(body);
      expect(answer.status, body).toBe(400);
      expect(answer.body.errors?.[0]?.extensions?.code, body).toBe(code);
      expect(answer.body.errors?.[0]?.message, body).not.toBe('Internal server error');
    }
    expect((await post('{"query": "{ hello }"}')).body).toEqual({ data: { hello: 'hi' } });
    // A request target Node accepts and `new URL` refuses: not found, not a 500.
    const raw = await rawHttpRequest(url, 'POST //[ HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}');
    expect(raw).toMatch(/^HTTP\/1\.1 404/);
  });

  it('drops a request whose client leaves mid-body with a debug line, not an error', async () => {
    const log = capturingLogger('demo', { level: 'debug' });
    const url = await startDemo('hello: String', { hello: () => 'hi' }, log.logger);
    const socket = connect(Number(new URL(url).port), '127.0.0.1');
    await once(socket, 'connect');
    socket.on('error', () => {});
    socket.write('POST /graphql HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 800\r\n\r\n{"query":');
    // Let the handler start reading the body.
    await new Promise((resolve) => setTimeout(resolve, 100));
    socket.destroy();
    const gone = 'connection closed before the request body was complete; request dropped';
    await vi.waitFor(() => expect(log.parsed().find((line) => line.msg === gone)).toMatchObject({ level: 20, route: '/graphql' }));
    expect(log.parsed().filter((line) => (line.level as number) >= 40)).toEqual([]);
    expect(await (await fetch(`${url}/healthz`)).json()).toEqual({ status: 'ok' });
  });

  it('answers a body over the limit with 413 PAYLOAD_TOO_LARGE and closes the connection', async () => {
    const url = await startDemo('hello: String', { hello: () => 'hi' });
    const body = JSON.stringify({ query: '{ hello }', variables: { pad: 'x'.repeat(1024 * 1024) } });
    const response = await fetch(`${url}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    expect(response.status).toBe(413);
    expect(response.headers.get('connection')).toBe('close');
    expect(((await response.json()) as { errors: Array<{ extensions: { code: string } }> }).errors[0]?.extensions.code).toBe(
      'PAYLOAD_TOO_LARGE',
    );
  });
});

describe('subgraph service caching', () => {
  it('answers every request on /graphql, and its own refusals, with cache-control no-store; an extra route sets its own', async () => {
    const issuer = await createTestTokenIssuer();
    service = createSubgraphService({
      name: 'demo',
      typeDefs: parse('type Query { hello: String broken: String }'),
      resolvers: {
        Query: {
          hello: () => 'hi',
          broken: () => {
            throw new Error('boom');
          },
        },
      },
      verifier: issuer.verifier,
      logger: createLogger({ service: 'demo', level: 'silent' }),
      registry: createMetricsRegistry('demo'),
      routes: { '/.well-known/jwks.json': (_req, res) => sendJson(res, 200, { keys: [] }, { 'cache-control': 'public, max-age=300' }) },
    }) as SubgraphService<never>;
    const url = await service.start(0);
    const post = (body: string, headers: Record<string, string> = {}) =>
      fetch(`${url}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });
    const answers = {
      data: await post('{"query": "{ hello }"}'),
      get: await fetch(`${url}/graphql?query=${encodeURIComponent('{ hello }')}`, { headers: { 'apollo-require-preflight': 'true' } }),
      failedField: await post('{"query": "{ broken }"}'),
      signedIn: await post('{"query": "{ hello }"}', { authorization: `Bearer ${await issuer.mint({ userId: 'usr_1', role: 'user' })}` }),
      badToken: await post('{"query": "{ hello }"}', { authorization: 'Bearer a.b.c' }),
      invalid: await post('{"query": "{ nope }"}'),
      notJson: await post('{"query": '),
      tooLarge: await post(JSON.stringify({ query: '{ hello }', variables: { pad: 'x'.repeat(1024 * 1024) } })),
      noRoute: await fetch(`${url}/x1`),
      csrf: await fetch(`${url}/graphql?query=${encodeURIComponent('{ hello }')}`),
    };
    expect(Object.fromEntries(Object.entries(answers).map(([name, response]) => [name, response.status]))).toEqual({
      data: 200,
      get: 200,
      failedField: 200,
      signedIn: 200,
      badToken: 401,
      invalid: 400,
      notJson: 400,
      tooLarge: 413,
      noRoute: 404,
      csrf: 400,
    });
    for (const [name, response] of Object.entries(answers)) expect(response.headers.get('cache-control'), name).toBe('no-store');
    expect((await fetch(`${url}/.well-known/jwks.json`)).headers.get('cache-control')).toBe('public, max-age=300');
  });
});

describe('subgraph service when the database is unreachable', () => {
  it('answers SERVICE_UNAVAILABLE (retryable) instead of INTERNAL_SERVER_ERROR, without the driver message', async () => {
    const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
    const wrapped = new Error('Failed query: update cards.cards set status = $1', { cause: refused });
    const url = await startDemo('charge: String', {
      charge: () => {
        throw wrapped;
      },
    });
    const response = await fetch(`${url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ query: '{ charge }' }),
    });
    const body = (await response.json()) as { errors: Array<{ message: string; extensions: { code: string } }> };
    expect(body.errors[0]?.extensions.code).toBe('SERVICE_UNAVAILABLE');
    expect(JSON.stringify(body)).not.toMatch(/5432|cards\.cards|ECONNREFUSED/);
  });
});
