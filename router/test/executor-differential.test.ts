import { Supergraph } from '@apollo/federation-internals';
import fc from 'fast-check';
import type { GraphQLSchema } from 'graphql';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDifferentialSubgraphs } from './executor-differential-fixtures.ts';
import { startExecutorSubgraphs, startGatewayPair } from './executor-fixtures.ts';
import { type OperationOptions, operationArbitrary, validationErrors } from './executor-operation-arbitrary.ts';

/**
 * Property-based differential test: random valid operations (executor-operation-arbitrary.ts)
 * run through vanilla @apollo/gateway and through the compiled executor on the same
 * subgraphs; the responses must be the same JSON text (data with key order, errors with
 * message, path and extensions, extensions). Two sets of subgraphs: the corpus test's
 * (executor-fixtures.ts: an interface and a union of entities spread over three subgraphs,
 * @requires/@provides, non-null fields answered null, `_entities` errors, unknown entities, a
 * list repeating one entity) and executor-differential-fixtures.ts, where `mode` arguments
 * choose nulls and errors at every level and lists of entities repeat and hold nulls.
 *
 * One known difference, where vanilla is the one off the spec: it merges two fragments with
 * the same type condition in one selection set before shaping, so a field between them comes
 * after the second one's fields (`{ ... on Product { name } id ... on Product { kind } }`:
 * vanilla name, kind, id; the spec's CollectFields and the compiled executor name, id, kind).
 * The test below pins the compiled order; a hunt with another seed may stop on such a case
 * (same data, key order only), about 1 in 5,000 generated operations.
 *
 * `DIFF_RUNS` and `DIFF_SEED` override the bounded default for a local hunt, e.g.
 * `DIFF_RUNS=5000 DIFF_SEED=$RANDOM npx vitest run --config vitest.config.ts router/test/executor-differential.test.ts`.
 */

const corpusOptions: OperationOptions = {
  literals: {
    ID: ['"b1"', '"b2"', '"b3"', '"b4"', '"m1"', '"nope"'],
    String: ['"e"', '"alien"', '"u"', '""', '"a"'],
  },
  variables: [
    { name: 'b', type: 'Boolean!', values: [true, false] },
    { name: 'bt', type: 'Boolean', defaultValue: 'true', values: [undefined, true, false, null] },
    { name: 'bf', type: 'Boolean!', defaultValue: 'false', values: [undefined, true, false] },
    { name: 'id', type: 'ID!', values: ['b1', 'b2', 'b3', 'b4', 'm1', 'nope'] },
    { name: 'idd', type: 'ID', defaultValue: '"b1"', values: [undefined, 'b3', 'b4', null] },
    { name: 'term', type: 'String', values: [undefined, null, 'e', 'alien', ''] },
    { name: 'termd', type: 'String', defaultValue: '"u"', values: [undefined, 'a'] },
  ],
  aliases: ['a', 'b', 'toString'],
  maxDepth: 4,
  maxSelections: 4,
};

/**
 * Differences the generator found, shrunk: each failed on the compiled executor before its fix.
 */
const corpusRegressions: { name: string; query: string; variables?: Record<string, unknown> }[] = [
  {
    // The planner sends the alias as is, so the entity's `__typename` is the page count: the
    // gateway fails the whole response (an assertion in computeResponse), not the one object.
    name: 'a field aliased __typename under an object field',
    query: '{ book(id: "b1") { __typename: pages } }',
  },
  {
    name: 'a field aliased __typename in a list of entities merged from another subgraph',
    query: '{ featured { __typename: reviews { author { id } } } }',
  },
  {
    name: 'a root field aliased __typename, read by a fragment on the root type',
    query: '{ __typename: book(id: "b1") { id } ... on Query { a: __typename } }',
  },
  {
    // A nullable variable with a default may stand for Boolean!, and a request may still send
    // null: the plan's Condition node fails the whole request with the planner's message.
    name: 'a defaulted @skip variable sent as null, on a field the plan fetches under a condition',
    query: 'query Q($bt: Boolean = true) { items @skip(if: $bt) { id } }',
    variables: { bt: null },
  },
  {
    // The plan flattens search.@.__typename.@ for the movies' authors; "u" finds books only,
    // whose __typename is the string "Book": the gateway fails the request at the flatten
    // path, the executor used to iterate the string's characters as entities.
    name: 'a list field aliased __typename that a flatten path walks through, holding a string',
    query: '{ search(term: "u") { ... on Movie { __typename: reviews { author { name } } } } }',
  },
  {
    // Without a Condition node, computeResponse fails it, naming the directive.
    name: 'a defaulted @include variable sent as null, on __typename',
    query: 'query Q($bt: Boolean = true) { __typename @include(if: $bt) }',
    variables: { bt: null },
  },
];

const runs = Number(process.env.DIFF_RUNS ?? 300);
const seed = Number(process.env.DIFF_SEED ?? 20_260_517);

const modeOptions: OperationOptions = {
  literals: {
    ID: ['"p1"', '"p2"', '"p3"', '"p4"', '"p5"', '"s1"', '"s2"', '"nope"'],
    '[ID!]!': ['["p1", "p1", "nope", "p2"]', '["p3", "p4", "p5", "p1"]', '"p2"', '[]'],
    Mode: ['OK', 'NULL', 'ERROR', 'ERROR_CODE'],
  },
  variables: [
    { name: 'b', type: 'Boolean!', values: [true, false] },
    { name: 'bt', type: 'Boolean', defaultValue: 'true', values: [undefined, true, false, null] },
    { name: 'bf', type: 'Boolean!', defaultValue: 'false', values: [undefined, true, false] },
    { name: 'id', type: 'ID!', values: ['p1', 'p2', 'p3', 'p4', 'p5', 's1', 's2', 'nope'] },
    { name: 'ids', type: '[ID!]!', values: [['p1', 'p4', 'p1'], ['p5', 'p3'], 'p2'] },
    { name: 'mode', type: 'Mode', defaultValue: 'ERROR', values: [undefined, 'OK', 'NULL', 'ERROR_CODE', null] },
    { name: 'm', type: 'Mode!', values: ['OK', 'NULL', 'ERROR', 'ERROR_CODE'] },
  ],
  aliases: ['a', 'b', 'id', 'name'],
  maxDepth: 4,
  maxSelections: 4,
};

const modeRegressions: { name: string; query: string; variables?: Record<string, unknown> }[] = [
  {
    // The gateway's message names the value it found ("Product", the entity's own typename).
    name: 'an object field aliased __typename, answered by another subgraph',
    query: '{ product(id: "p2") { __typename: warehouse { code } } }',
  },
  {
    // The JSON scalar's object lands on the entity's key `id` ("p1"): the gateway's deepMerge
    // fails the fetch with the TypeError of its `in` check, and that message is the client's.
    name: 'an object-valued custom scalar aliased like the key field it is merged into',
    query: '{ product(id: "p1") { id: meta } }',
  },
  {
    // Before the fix, null took the else branch: the subgraphs were called and their errors returned.
    name: 'a defaulted @skip variable sent as null, on a fragment of an entity fetch',
    query: 'query Q($bt: Boolean = true) { shelf { id ... on Product @skip(if: $bt) { stock(mode: ERROR) } } }',
    variables: { bt: null },
  },
];

type Pair = Awaited<ReturnType<typeof startGatewayPair>>;

function differentialSuite(
  label: string,
  start: () => Promise<{ supergraphSdl: string; close(): Promise<void> }>,
  options: OperationOptions,
  regressions: { name: string; query: string; variables?: Record<string, unknown> }[],
  seed: number,
) {
  describe(`the compiled executor against vanilla @apollo/gateway on ${label}`, () => {
    let subgraphs: Awaited<ReturnType<typeof start>>;
    let pair: Pair;
    let apiSchema: GraphQLSchema;

    beforeAll(async () => {
      subgraphs = await start();
      pair = await startGatewayPair(subgraphs.supergraphSdl);
      apiSchema = Supergraph.build(subgraphs.supergraphSdl).apiSchema().toGraphQLJSSchema();
    });

    afterAll(async () => {
      await pair?.stop();
      await subgraphs?.close();
    });

    const compare = async (query: string, variables: Record<string, unknown>) => {
      const expected = JSON.stringify(await pair.vanilla(query, variables));
      const actual = JSON.stringify(await pair.compiled(query, variables));
      return { expected, actual };
    };

    for (const entry of regressions) {
      it(`answers like vanilla: ${entry.name}`, async () => {
        const { expected, actual } = await compare(entry.query, entry.variables ?? {});
        expect(actual).toBe(expected);
      });
    }

    it(`answers like vanilla on ${runs} random operations (seed ${seed})`, async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.constant(null).chain(() => operationArbitrary(apiSchema, options)),
          async ({ query, variables }) => {
            fc.pre(validationErrors(apiSchema, query).length === 0);
            const { expected, actual } = await compare(query, variables);
            expect(actual, `${query}\nvariables ${JSON.stringify(variables)}`).toBe(expected);
          },
        ),
        { numRuns: runs, seed, maxSkipsPerRun: 1000 },
      );
    }, 600_000);
  });
}

describe('field order where vanilla @apollo/gateway merges fragments', () => {
  it('keeps the order of the operation (GraphQL spec, CollectFields), where vanilla moves a field after a later fragment', async () => {
    const subgraphs = await startDifferentialSubgraphs();
    const pair = await startGatewayPair(subgraphs.supergraphSdl);
    try {
      const query = '{ product(id: "p1") { ... on Product { name } id ... on Product { kind } } }';
      const vanilla = await pair.vanilla(query);
      const compiled = await pair.compiled(query);
      expect(compiled).toEqual(vanilla);
      expect(Object.keys((compiled.data as { product: object }).product)).toEqual(['name', 'id', 'kind']);
      expect(Object.keys((vanilla.data as { product: object }).product)).toEqual(['name', 'kind', 'id']);
    } finally {
      await pair.stop();
      await subgraphs.close();
    }
  });
});

differentialSuite('the corpus subgraphs', startExecutorSubgraphs, corpusOptions, corpusRegressions, seed);
differentialSuite('subgraphs answering nulls and errors by argument', startDifferentialSubgraphs, modeOptions, modeRegressions, seed + 1);
