import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import {
  createLogger,
  createMetricsRegistry,
  createSubgraphService,
  ErrorCode,
  GhostPayError,
  type JwtVerifier,
  type ServerTlsConfig,
  type SubgraphContext,
} from '@ghostpay/platform';
import { createTestTokenIssuer, freshDatabase, type TestDatabase, type TestTokenIssuer } from '@ghostpay/test-support';
import {
  type ASTVisitor,
  OverlappingFieldsCanBeMergedRule,
  parse,
  type SelectionSetNode,
  specifiedRules,
  type ValidationContext,
  type ValidationRule,
} from 'graphql';
import { afterAll, beforeAll } from 'vitest';
import { createApiKeyLookup } from '../src/api-keys.ts';
import { composeFromConfig } from '../src/compose-supergraph.ts';
import { type RouterConfig, routerConfigSchema } from '../src/config.ts';
import { sha256Hex } from '../src/persisted-queries.ts';
import { createRouter, type RouterDeps } from '../src/router.ts';
import type { RouterSubscriptionsSettings } from '../src/subscriptions/index.ts';

export const repoRoot = resolve(import.meta.dirname, '../..');

/** A persisted-query manifest in a temp dir holding `operations` (ids are their bodies' sha256); returns its path for `ROUTER_PQ_MANIFESTS`. */
export function writeManifest(operations: { name: string; type: 'query' | 'mutation' | 'subscription'; body: string }[]): string {
  const manifest = join(mkdtempSync(join(tmpdir(), 'pq-')), 'persisted-queries.json');
  writeFileSync(
    manifest,
    JSON.stringify({
      format: 'apollo-persisted-query-manifest',
      version: 1,
      operations: operations.map((operation) => ({ id: sha256Hex(operation.body), ...operation })),
    }),
  );
  return manifest;
}
export const silentLogger = createLogger({ service: 'router-test', level: 'silent' });

/** The supergraph composed from the schema files supergraph.yaml lists (what `npm run compose` writes). */
export function composeRepoSupergraph(): string {
  const outcome = composeFromConfig(resolve(repoRoot, 'supergraph.yaml'));
  if (!outcome.ok) throw new Error(`composition failed:\n${outcome.errors.join('\n')}`);
  return outcome.supergraphSdl;
}

const now = () => new Date().toISOString();

/**
 * Small stand-in subgraphs serving the real schema files with canned resolvers and a hit
 * counter, for router behaviour that must not depend on the subgraphs' own logic (limits,
 * refusals before any fetch, breaker). They verify the forwarded JWT like real subgraphs.
 */
const stubResolvers: Record<string, Record<string, unknown>> = {
  auth: {
    Query: {
      me: (_: unknown, __: unknown, ctx: SubgraphContext) => ({
        id: ctx.principal?.userId,
        name: 'Me',
        email: 'me@example.test',
        role: 'USER',
        createdAt: now(),
      }),
      user: (_: unknown, args: { id: string }) => ({
        id: args.id,
        name: `User ${args.id}`,
        email: 'u@example.test',
        role: 'USER',
        createdAt: now(),
      }),
    },
    Mutation: {
      createToken: () => ({ accessToken: 'x.y.z', tokenType: 'Bearer', expiresIn: 900, scope: 'cards:read' }),
    },
    User: {
      __resolveReference: (ref: { id: string }) => ({
        id: ref.id,
        name: `User ${ref.id}`,
        email: 'u@example.test',
        role: 'USER',
        createdAt: now(),
      }),
    },
  },
  cards: {
    Query: {
      card: (_: unknown, args: { id: string }) => ({
        id: args.id,
        status: 'ACTIVE',
        amount: 1000,
        currency: 'USD',
        currencyExponent: 2,
        bin: '400000',
        last4: '4242',
        brand: 'VISA',
        expMonth: 12,
        expYear: 2030,
        expiresAt: now(),
        owner: { id: 'usr_owner' },
        issuedBy: { id: 'usr_issuer' },
        createdAt: now(),
      }),
    },
  },
  charges: {
    Query: {
      charge: (_: unknown, args: { id: string }) => {
        // A charges subgraph whose database is down, for the tests of failures on our side.
        if (args.id === 'ch_db_down') throw new GhostPayError(ErrorCode.SERVICE_UNAVAILABLE, 'Database unavailable');
        return {
          id: args.id,
          status: 'AUTHORIZED',
          amount: 500,
          currency: 'USD',
          refundedAmount: 0,
          card: { id: 'card_1' },
          merchant: { id: 'usr_m' },
          createdAt: now(),
        };
      },
    },
  },
};

export interface StubSubgraphs {
  urls: Record<string, string>;
  hits: Record<string, number>;
  /** Every header set each subgraph received, in order. */
  headers: Record<string, Record<string, string | string[] | undefined>[]>;
  stop(name: string): Promise<void>;
  restart(name: string): Promise<void>;
  close(): Promise<void>;
}

export async function startStubSubgraphs(
  verifier: JwtVerifier,
  names = ['auth', 'cards', 'charges', 'analytics'],
  options: { tls?: ServerTlsConfig } = {},
): Promise<StubSubgraphs> {
  const hits: Record<string, number> = {};
  const headers: StubSubgraphs['headers'] = {};
  const urls: Record<string, string> = {};
  const ports: Record<string, number> = {};
  const running = new Map<string, ReturnType<typeof createSubgraphService>>();
  const start = async (name: string, port: number) => {
    const service = createSubgraphService({
      name,
      typeDefs: parse(readFileSync(resolve(repoRoot, `subgraphs/${name}/src/schema.graphql`), 'utf8')),
      resolvers: (stubResolvers[name] ?? {}) as never,
      verifier,
      logger: silentLogger,
      registry: createMetricsRegistry(name),
      shutdownTimeoutMs: 100,
      tls: options.tls,
      extendContext: (base, req) => {
        hits[name] = (hits[name] ?? 0) + 1;
        const seen = headers[name] ?? [];
        seen.push({ ...req.headers });
        headers[name] = seen;
        return base;
      },
    });
    const url = await service.start(port);
    running.set(name, service);
    ports[name] = Number(new URL(url).port);
    urls[name] = `${url}/graphql`;
  };
  for (const name of names) {
    hits[name] = 0;
    await start(name, 0);
  }
  return {
    urls,
    hits,
    headers,
    async stop(name) {
      await running.get(name)?.close();
      running.delete(name);
    },
    async restart(name) {
      await start(name, ports[name] as number);
    },
    async close() {
      await Promise.all([...running.values()].map((s) => s.close()));
    },
  };
}

export function routerConfig(env: Record<string, string | undefined> = {}): RouterConfig {
  return routerConfigSchema.parse({ LOG_LEVEL: 'silent', SHUTDOWN_TIMEOUT_MS: '200', ...env });
}

export function subgraphUrlsEnv(urls: Record<string, string>): string {
  return Object.entries(urls)
    .map(([name, url]) => `${name}=${url}`)
    .join(',');
}

export async function startRouter(
  options: Omit<RouterDeps, 'config' | 'logger'> & { env?: Record<string, string>; urls: Record<string, string> },
) {
  const { env, urls, ...deps } = options;
  const router = createRouter({
    config: routerConfig({ ROUTER_SUBGRAPH_URLS: subgraphUrlsEnv(urls), ...env }),
    logger: silentLogger,
    supergraphSdl: deps.supergraphSdl ?? composeRepoSupergraph(),
    ...deps,
  });
  const url = await router.start(0);
  return Object.assign(router, { graphqlUrl: `${url}/graphql` });
}

export type StartedRouter = Awaited<ReturnType<typeof startRouter>>;

export interface RouterFixtureOptions extends Omit<Parameters<typeof startRouter>[0], 'verifier' | 'urls' | 'subscriptions'> {
  /** The router's subscriptions, built from the fixture's issuer (e.g. `idleSubscriptions`). @default none */
  subscriptions?: (issuer: TestTokenIssuer) => RouterSubscriptionsSettings;
  /** A fresh database (pool of 2) whose auth.api_keys the router's `apiKeyLookup` reads. @default none */
  database?: boolean;
  /** The claims of the bearer token minted once for `authorization`. @default none */
  bearer?: Parameters<TestTokenIssuer['bearer']>[0];
}

/** What `withRouter` has started; its fields are set once the file's `beforeAll` has run. */
export interface RouterFixture {
  issuer: TestTokenIssuer;
  subgraphs: StubSubgraphs;
  router: StartedRouter;
  /** Only with `database: true`. */
  database: TestDatabase;
  /** `Bearer …` for the `bearer` claims; only when they were given. */
  authorization: string;
}

/**
 * A token issuer, the stand-in subgraphs and a router in front of them, started in `beforeAll`
 * and closed in `afterAll` of the enclosing describe (after the hooks registered later in it,
 * vitest running `afterAll` hooks in reverse).
 */
export function withRouter(options: RouterFixtureOptions = {}): RouterFixture {
  const { subscriptions, database, bearer, ...deps } = options;
  const fixture = {} as RouterFixture;
  beforeAll(async () => {
    fixture.issuer = await createTestTokenIssuer();
    if (database) fixture.database = await freshDatabase({ poolSize: 2 });
    fixture.subgraphs = await startStubSubgraphs(fixture.issuer.verifier);
    fixture.router = await startRouter({
      verifier: fixture.issuer.verifier,
      urls: fixture.subgraphs.urls,
      ...(database ? { apiKeyLookup: createApiKeyLookup(fixture.database) } : {}),
      ...(subscriptions ? { subscriptions: subscriptions(fixture.issuer) } : {}),
      ...deps,
    });
    if (bearer) fixture.authorization = await fixture.issuer.bearer(bearer);
  });
  afterAll(async () => {
    await fixture.router?.close();
    await fixture.subgraphs?.close();
    await fixture.database?.close();
  });
  return fixture;
}

export interface GraphQLResponse {
  status: number;
  headers: Headers;
  body: {
    data?: Record<string, unknown> | null;
    errors?: { message: string; path?: (string | number)[]; extensions?: Record<string, unknown> }[];
  };
}

export async function post(url: string, body: unknown, headers: Record<string, string> = {}): Promise<GraphQLResponse> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await response.text();
  let parsed: GraphQLResponse['body'];
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = { errors: [{ message: text }] };
  }
  return { status: response.status, headers: response.headers, body: parsed };
}

export function codes(response: GraphQLResponse): string[] {
  return (response.body.errors ?? []).map((e) => String(e.extensions?.code));
}

/**
 * graphql-js's specifiedRules with OverlappingFieldsCanBeMergedRule counting the selection sets it
 * checks: what the pre-validation tests (repeated fields, operation limits) show validation is spared.
 */
export function countingOverlapRules() {
  const counter = { selectionSets: 0 };
  const counting: ValidationRule = (context: ValidationContext): ASTVisitor => {
    const visitor = OverlappingFieldsCanBeMergedRule(context) as { SelectionSet: (node: SelectionSetNode) => void };
    return {
      SelectionSet(node) {
        counter.selectionSets++;
        visitor.SelectionSet(node);
      },
    };
  };
  return { counter, rules: specifiedRules.map((rule) => (rule === OverlappingFieldsCanBeMergedRule ? counting : rule)) };
}
