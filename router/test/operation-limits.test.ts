import { getOperationAST, parse } from 'graphql';
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
