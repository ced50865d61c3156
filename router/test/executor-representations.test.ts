import fc from 'fast-check';
import { buildSchema } from 'graphql';
import { describe, expect, it } from 'vitest';
import { compilePlan, executeCompiledPlan, flattenAt, type SubgraphRequest } from '../src/executor/index.ts';
import type { PlanSelection, QueryPlanLike } from '../src/executor/plan-types.ts';

/**
 * The representations one entity fetch sends: distinct ones once, in first-seen order, each
 * equal to what @apollo/gateway would build for its entities. The executor finds repeats by
 * their values rather than by a JSON string per entity; this checks it against the plain way
 * (JSON.stringify of each entity's representation, the first of each text kept), on entities
 * made to collide: shared ids, 1 vs "1", null, missing fields, object values, no __typename.
 */
const schema = buildSchema(`
  interface Node { id: ID! }
  type Product implements Node { id: ID! sku: String }
  type Book implements Node { id: ID! sku: String }
  type Query { items: [Node] }
`);

const leaf = (name: string): PlanSelection => ({ kind: 'Field', name });
/** `... on Product { __typename id sku }`, `... on Book { __typename id }`, as a planner writes requires. */
const requires: PlanSelection[] = [
  { kind: 'InlineFragment', typeCondition: 'Product', selections: [leaf('__typename'), leaf('id'), leaf('sku')] },
  { kind: 'InlineFragment', typeCondition: 'Book', selections: [leaf('__typename'), leaf('id')] },
];
const plan: QueryPlanLike = {
  kind: 'QueryPlan',
  node: {
    kind: 'Flatten',
    path: ['items', '@'],
    node: {
      kind: 'Fetch',
      serviceName: 'extra',
      requires,
      operation: 'query($representations:[_Any!]!){_entities(representations:$representations){...on Node{__typename}}}',
      operationName: undefined,
      operationKind: 'query',
      variableUsages: [],
    },
  },
};

/** The gateway's way: each entity's representation object, JSON per entity, first text kept. */
function expectedRepresentations(entities: Record<string, unknown>[]): string[] {
  const out: string[] = [];
  for (const entity of entities) {
    const typename = entity.__typename;
    const fragment = requires.find((f) => f.kind === 'InlineFragment' && f.typeCondition === typename);
    if (typeof typename !== 'string' || !fragment || fragment.kind !== 'InlineFragment') continue;
    const representation: Record<string, unknown> = {};
    let complete = true;
    for (const field of fragment.selections) {
      if (field.kind !== 'Field') continue;
      if (!Object.hasOwn(entity, field.name) || entity[field.name] === undefined) complete = false;
      representation[field.name] = entity[field.name];
    }
    if (!complete) continue;
    const json = JSON.stringify(representation);
    if (!out.includes(json)) out.push(json);
  }
  return out;
}

const value = fc.oneof(
  fc.constantFrom('1', 1, 'a', null, true, 'true', 0),
  fc.constant(undefined), // a missing field
  fc.constantFrom({ code: 1 }, { code: '1' }, [1]), // a JSON scalar value: compared by its text
);
const entity = fc
  .record({ __typename: fc.constantFrom('Product', 'Book', 'Other', '', undefined), id: value, sku: value })
  .map((e) => Object.fromEntries(Object.entries(e).filter(([, v]) => v !== undefined)) as Record<string, unknown>);

async function sentFor(entities: Record<string, unknown>[]) {
  const compiled = compilePlan(plan, schema);
  const requests: SubgraphRequest[] = [];
  await executeCompiledPlan(compiled, {
    variables: undefined,
    defaults: {},
    errors: [],
    result: { items: entities },
    send: async (request) => {
      requests.push(request);
      const representations = JSON.parse(request.variablesJson ?? '{}').representations as unknown[];
      return { data: { _entities: representations.map((r) => ({ answer: JSON.stringify(r) })) } };
    },
  });
  return requests;
}

describe('representations of an entity fetch', () => {
  it('are the distinct ones the gateway would build, in first-seen order, and every entity gets its own answer', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(entity, { maxLength: 40 }), async (entities) => {
        const expected = expectedRepresentations(entities);
        const copies = entities.map((e) => ({ ...e }));
        const requests = await sentFor(copies);
        if (expected.length === 0) {
          expect(requests).toHaveLength(0);
          return;
        }
        expect(requests).toHaveLength(1);
        const sent = (JSON.parse(requests[0]?.variablesJson ?? '{}').representations as unknown[]).map((r) => JSON.stringify(r));
        expect(sent).toEqual(expected);
        // Each entity that sent a representation got the answer to exactly that representation.
        copies.forEach((copy, i) => {
          const own = expectedRepresentations([entities[i] as Record<string, unknown>])[0];
          expect(copy.answer).toBe(own);
        });
      }),
      { numRuns: 300 },
    );
  });

  it('sends one product repeated a hundred times once', async () => {
    const entities = Array.from({ length: 100 }, (_, i) => ({ __typename: 'Product', id: String(i % 3), sku: 'x' }));
    const [request] = await sentFor(entities);
    expect(JSON.parse(request?.variablesJson ?? '{}').representations).toEqual([
      { __typename: 'Product', id: '0', sku: 'x' },
      { __typename: 'Product', id: '1', sku: 'x' },
      { __typename: 'Product', id: '2', sku: 'x' },
    ]);
  });
});

/** @apollo/gateway's flattenResultsAtPath (executeQueryPlan.js), which is not exported. */
function gatewayFlatten(value: unknown, path: readonly (string | number)[]): unknown {
  if (path.length === 0) return value;
  if (value === undefined || value === null) return value;
  const [current, ...rest] = path;
  if (current === '@') return (value as unknown[]).flatMap((element) => gatewayFlatten(element, rest));
  return gatewayFlatten(Object.hasOwn(value, current as string) ? (value as Record<string, unknown>)[current as string] : undefined, rest);
}

describe('the entities at a flatten path', () => {
  it("are the gateway's flattenResultsAtPath, lists at every @ flattened into one, nulls and missing fields kept", () => {
    // Data shaped like the path (a: list of {b: list of {c: …}}), with nulls and holes anywhere.
    const leaf = fc.oneof(fc.constant(null), fc.record({ id: fc.nat(9) }), fc.array(fc.record({ id: fc.nat(9) }), { maxLength: 3 }));
    const c = fc.option(fc.record({ c: leaf }, { requiredKeys: [] }));
    const b = fc.option(fc.record({ b: fc.option(fc.array(c, { maxLength: 4 })) }, { requiredKeys: [] }));
    const data = fc.record({ a: fc.option(fc.array(b, { maxLength: 4 })) }, { requiredKeys: [] });
    const paths: (string | number)[][] = [
      ['a'],
      ['a', '@'],
      ['a', '@', 'b'],
      ['a', '@', 'b', '@'],
      ['a', '@', 'b', '@', 'c'],
      ['a', '@', 'b', '@', 'c', '@'],
    ];
    let refused = 0;
    fc.assert(
      fc.property(data, fc.constantFrom(...paths), (value, path) => {
        let expected: unknown;
        try {
          expected = gatewayFlatten(value, path);
        } catch (error) {
          // A non-list under @: the gateway fails the request there, and so must we, with its error.
          refused++;
          expect(() => flattenAt(value, path)).toThrow((error as Error).message);
          return;
        }
        expect(flattenAt(value, path)).toEqual(expected);
      }),
      { numRuns: 500 },
    );
    // The generator does reach that case (a record where the path says a list).
    expect(refused).toBeGreaterThan(0);
  });
});
