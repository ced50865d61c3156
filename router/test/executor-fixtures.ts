import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ApolloGateway } from '@apollo/gateway';
import { ApolloServer } from '@apollo/server';
import { buildSubgraphSchema } from '@apollo/subgraph';
import { execute, GraphQLError, type GraphQLSchema, parse } from 'graphql';
import { composeSubgraphs } from '../src/compose-supergraph.ts';
import { gatewayWithCompiledExecutor } from '../src/executor/index.ts';

/**
 * Three small subgraphs built to exercise what a plan executor can get wrong: an interface and
 * a union whose members are entities extended elsewhere, @requires and @provides, non-null
 * fields that a subgraph answers with null (null bubbling), resolvers that fail inside
 * `_entities` (error paths), and variables with defaults for @skip/@include.
 */
const link =
  '@link(url: "https://specs.apollo.dev/federation/v2.3", import: ["@key", "@external", "@requires", "@provides", "@shareable"])';

const books = [
  { id: 'b1', title: 'Dune', pages: 412 },
  { id: 'b2', title: 'Emma', pages: 320 },
  { id: 'b3', title: 'Ulysses', pages: 730 },
  { id: 'b4', title: 'Walden', pages: 150 },
];
const movies = [{ id: 'm1', title: 'Alien', minutes: 117 }];
const reviews: Record<string, { id: string; stars: number | null; body: string; authorId: string }[]> = {
  b1: [
    { id: 'r1', stars: 5, body: 'Spice', authorId: 'a1' },
    { id: 'r2', stars: 4, body: 'Sand', authorId: 'a2' },
  ],
  b2: [],
  // a3's name is null although the schema says String!: the review's author bubbles up to the review list.
  // a9 is unknown to the people subgraph (its entity comes back null without an error): the gateway's own bubbling.
  b3: [
    { id: 'r3', stars: 3, body: 'Long', authorId: 'a3' },
    { id: 'r6', stars: 1, body: 'Who?', authorId: 'a9' },
  ],
  // a4's entity resolver throws: an `_entities` error mapped back to the client's path.
  b4: [{ id: 'r4', stars: 2, body: 'Quiet', authorId: 'a4' }],
  // stars null on a non-null field, in the subgraph that owns it.
  m1: [
    { id: 'r5', stars: null, body: 'Scary', authorId: 'a1' },
    { id: 'r7', stars: 4, body: 'Again', authorId: 'a4' },
  ],
};
const authors: Record<string, { id: string; name: string | null; handle: string }> = {
  a1: { id: 'a1', name: 'Ann', handle: '@ann' },
  a2: { id: 'a2', name: 'Bo', handle: '@bo' },
  a3: { id: 'a3', name: null, handle: '@nameless' },
};

export const executorSubgraphs = [
  {
    name: 'catalog',
    sdl: `extend schema ${link}
type Query {
  items: [Item!]!
  search(term: String = "e"): [SearchResult]
  book(id: ID!): Book
  featured: [Book]
}
interface Item { id: ID! title: String! }
type Book implements Item @key(fields: "id") { id: ID! title: String! pages: Int }
type Movie implements Item @key(fields: "id") { id: ID! title: String! minutes: Int }
union SearchResult = Book | Movie`,
    resolvers: {
      Query: {
        items: () => [...books.map((b) => ({ ...b, __typename: 'Book' })), ...movies.map((m) => ({ ...m, __typename: 'Movie' }))],
        search: (_: unknown, { term }: { term: string }) =>
          [...books.map((b) => ({ ...b, __typename: 'Book' })), ...movies.map((m) => ({ ...m, __typename: 'Movie' }))].filter((x) =>
            x.title.toLowerCase().includes(term.toLowerCase()),
          ),
        book: (_: unknown, { id }: { id: string }) => books.find((b) => b.id === id) ?? null,
        // The same book twice: identical representations in one entity fetch.
        featured: () => ['b2', 'b1', 'b2', 'b3'].map((id) => books.find((b) => b.id === id)),
      },
      SearchResult: { __resolveType: (x: { __typename: string }) => x.__typename },
      Item: { __resolveType: (x: { __typename: string }) => x.__typename },
      Book: { __resolveReference: (ref: { id: string }) => books.find((b) => b.id === ref.id) ?? null },
      Movie: { __resolveReference: (ref: { id: string }) => movies.find((m) => m.id === ref.id) ?? null },
    },
  },
  {
    name: 'reviews',
    sdl: `extend schema ${link}
type Book @key(fields: "id") {
  id: ID!
  title: String! @external
  reviews: [Review!]
  rating: Float
  summary: String @requires(fields: "title")
}
type Movie @key(fields: "id") { id: ID! reviews: [Review!] }
type Review { id: ID! stars: Int! body: String author: Author! @provides(fields: "handle") }
type Author @key(fields: "id") { id: ID! handle: String @external }`,
    resolvers: {
      Book: {
        __resolveReference: (ref: { id: string; title?: string }) => ref,
        reviews: (book: { id: string }) => reviews[book.id] ?? [],
        rating: (book: { id: string }) => {
          if (book.id === 'b2') throw new GraphQLError('rating service timed out', { extensions: { code: 'RATING_UNAVAILABLE' } });
          return (reviews[book.id] ?? []).reduce((sum, r) => sum + (r.stars ?? 0), 0);
        },
        summary: (book: { title: string }) => `${book.title} (${book.title.length} letters)`,
      },
      Movie: { __resolveReference: (ref: { id: string }) => ref, reviews: (movie: { id: string }) => reviews[movie.id] ?? [] },
      Review: { author: (review: { authorId: string }) => ({ id: review.authorId, handle: authors[review.authorId]?.handle ?? '@ghost' }) },
    },
  },
  {
    name: 'people',
    sdl: `extend schema ${link}
type Author @key(fields: "id") { id: ID! name: String! handle: String @shareable }`,
    resolvers: {
      Author: {
        __resolveReference: (ref: { id: string }) => {
          if (ref.id === 'a4') throw new Error('author a4 is locked');
          return authors[ref.id] ?? null;
        },
      },
    },
  },
];

/** Subgraphs by name and SDL, with their resolvers (as `buildSubgraphSchema` takes them). */
export interface FixtureSubgraph {
  name: string;
  sdl: string;
  resolvers: unknown;
}

/**
 * Subgraphs on one loopback HTTP server (a path per subgraph name), executed with graphql-js,
 * and their supergraph; counts fetches.
 */
export async function startSubgraphsServer(subgraphs: readonly FixtureSubgraph[]) {
  const schemas = new Map<string, GraphQLSchema>();
  for (const s of subgraphs) schemas.set(s.name, buildSubgraphSchema([{ typeDefs: parse(s.sdl), resolvers: s.resolvers as never }]));
  const fetches: { subgraph: string; body: string }[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => {
      body += c;
    });
    req.on('end', async () => {
      const name = (req.url ?? '').slice(1);
      const schema = schemas.get(name);
      fetches.push({ subgraph: name, body });
      if (!schema) {
        res.writeHead(404).end();
        return;
      }
      const request = JSON.parse(body);
      const result = await execute({
        schema,
        document: parse(request.query),
        variableValues: request.variables,
        operationName: request.operationName,
      });
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(result));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const outcome = composeSubgraphs(subgraphs.map((s) => ({ name: s.name, url: `${url}/${s.name}`, sdl: s.sdl })));
  if (!outcome.ok) throw new Error(outcome.errors.join('\n'));
  return {
    url,
    supergraphSdl: outcome.supergraphSdl,
    fetches,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** The subgraphs on one loopback HTTP server (paths /catalog, /reviews, /people); counts fetches. */
export function startExecutorSubgraphs() {
  return startSubgraphsServer(executorSubgraphs);
}

/** Two Apollo Servers on the same supergraph and subgraphs: vanilla @apollo/gateway, and the same gateway with the compiled executor. */
export async function startGatewayPair(
  supergraphSdl: string,
  buildService?: ConstructorParameters<typeof ApolloGateway>[0] extends infer C
    ? C extends { buildService?: infer B }
      ? B
      : never
    : never,
) {
  const vanilla = new ApolloServer({ gateway: new ApolloGateway({ supergraphSdl, ...(buildService ? { buildService } : {}) }) });
  const compiledGateway = gatewayWithCompiledExecutor(new ApolloGateway({ supergraphSdl, ...(buildService ? { buildService } : {}) }));
  const compiled = new ApolloServer({ gateway: compiledGateway });
  await Promise.all([vanilla.start(), compiled.start()]);
  const run = async (server: ApolloServer, query: string, variables?: Record<string, unknown>) => {
    const response = await server.executeOperation({ query, variables });
    if (response.body.kind !== 'single') throw new Error('expected a single result');
    return JSON.parse(JSON.stringify(response.body.singleResult)) as {
      data?: unknown;
      errors?: { message: string; path?: unknown[]; extensions?: Record<string, unknown> }[];
      extensions?: Record<string, unknown>;
    };
  };
  return {
    executor: compiledGateway.executor,
    vanilla: (query: string, variables?: Record<string, unknown>) => run(vanilla, query, variables),
    compiled: (query: string, variables?: Record<string, unknown>) => run(compiled, query, variables),
    stop: () => Promise.all([vanilla.stop(), compiled.stop()]),
  };
}
