import { getOperationAST, Kind, parse } from 'graphql';
import { describe, expect, it } from 'vitest';
import { measureOperation } from '../src/operation-limits.ts';

function costOf(query: string, variables?: Record<string, unknown>) {
  const document = parse(query);
  const operation = getOperationAST(document);
  if (!operation) throw new Error('no operation');
  return measureOperation(document, operation, variables).cost;
}

const nested = (first: string) =>
  `{ cards(first: ${first}) { edges { node { owner { cards(first: ${first}) { edges { node { id } } } } } } } }`;

describe('measuring an operation', () => {
  const literal = costOf(`query ${nested('100')}`);

  it('sizes a page from a literal or from a variable the request sends', () => {
    expect(literal).toBe(20_402);
    expect(costOf(`query ($n: Int) ${nested('$n')}`, { n: 100 })).toBe(literal);
  });

  it("sizes a page from a variable's default value when the request leaves the variable out", () => {
    expect(costOf(`query ($n: Int = 100) ${nested('$n')}`)).toBe(literal);
    expect(costOf(`query ($n: Int = 100) ${nested('$n')}`, { other: 1 })).toBe(literal);
  });

  it('prefers a value the request sends over the default, as GraphQL coercion does', () => {
    expect(costOf(`query ($n: Int = 100) ${nested('$n')}`, { n: 2 })).toBe(costOf(`query ${nested('2')}`));
  });

  it('assumes the default list size for an explicit null (coercion keeps null, not the default) and for a null default', () => {
    const assumed = costOf(`query ${nested('null')}`);
    expect(costOf(`query ($n: Int = 100) ${nested('$n')}`, { n: null })).toBe(assumed);
    expect(costOf(`query ($n: Int = null) ${nested('$n')}`)).toBe(assumed);
  });

  it('keeps a variable named __proto__ a variable: its default cannot stand in for another one', () => {
    // `$__proto__`'s object default used to become the prototype of the variables, so `$first`,
    // left out, was read from it (1) instead of being unsized.
    const query = `query ($__proto__: F = {first: 1}, $first: Int) { cards(first: $first, filter: $__proto__) { edges { node { owner { cards(first: $first) { edges { node { id } } } } } } } }`;
    expect(costOf(query)).toBe(costOf(`query ${nested('null')}`));
    expect(costOf(query, { first: 100 })).toBe(literal);
    expect(Object.getPrototypeOf({})).toBe(Object.prototype);
  });
});

describe('measuring fragments spread many times', () => {
  /** `fragment F0 on Query { ...F1 ...F1 }` … `fragment Fn on Query { __typename }`: 2^n spreads of Fn, about 9n tokens. */
  const doubling = (n: number, leaf = '__typename') => {
    let query = 'query Q { ...F0 }\n';
    for (let i = 0; i < n; i++) query += `fragment F${i} on Query { ...F${i + 1} ...F${i + 1} }\n`;
    return `${query}fragment F${n} on Query { ${leaf} }\n`;
  };

  it('measures each fragment once, in time linear in the document, still counting every spread', () => {
    // Walking every spread took ~2.4 s for 20 levels here (and doubled with each level): any
    // caller could block the router's event loop with a few hundred tokens. Counted, not timed:
    // how often each fragment's selections are read. F20 is reached by 2^20 spreads, F0 by one;
    // measured once per fragment, both are read equally often.
    const document = parse(doubling(20));
    const reads = new Map<string, number>();
    const counted = document.definitions.map((definition) => {
      if (definition.kind !== Kind.FRAGMENT_DEFINITION) return definition;
      const { selections } = definition.selectionSet;
      const name = definition.name.value;
      const selectionSet = Object.defineProperty({ ...definition.selectionSet }, 'selections', {
        get: () => {
          reads.set(name, (reads.get(name) ?? 0) + 1);
          return selections;
        },
      });
      return { ...definition, selectionSet };
    });
    const countedDocument = { ...document, definitions: counted };
    const operation = getOperationAST(countedDocument);
    if (!operation) throw new Error('no operation');
    expect(measureOperation(countedDocument, operation).cost).toBe(2 ** 20);
    expect(reads.size).toBe(21);
    expect(reads.get('F0')).toBeGreaterThan(0);
    expect(Math.max(...reads.values()), JSON.stringify(Object.fromEntries(reads))).toBe(reads.get('F0'));
    expect(reads.get('F20')).toBe(reads.get('F0'));
    // And 2^200 spreads, which no walk of every spread would finish.
    expect(costOf(doubling(200))).toBe(2 ** 200);
  });

  it('counts depth, root fields, aliases and introspection through shared fragments as before', () => {
    const document = parse(doubling(30, 'a: card(id: "1") { owner { __type: __typename } } b: me { id }'));
    const operation = getOperationAST(document);
    if (!operation) throw new Error('no operation');
    const shape = measureOperation(document, operation);
    expect(shape).toMatchObject({ depth: 3, aliases: 3, rootFields: 2 * 2 ** 30, cost: 5 * 2 ** 30, introspection: false });
    const introspecting = parse(doubling(30, '__type(name: "Card") { name }'));
    expect(measureOperation(introspecting, getOperationAST(introspecting) as never).introspection).toBe(true);
  });
});
