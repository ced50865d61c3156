import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startExecutorSubgraphs, startGatewayPair } from './executor-fixtures.ts';

/**
 * The compiled executor must answer exactly like vanilla @apollo/gateway: both run on the
 * same supergraph and subgraphs, and every response (data, errors with paths and codes,
 * extensions) is compared as JSON text, key order included.
 */
const corpus: { name: string; query: string; variables?: Record<string, unknown> }[] = [
  {
    name: 'interface list with type-specific fragments across three subgraphs',
    query: '{ items { __typename id title ... on Book { pages reviews { stars author { name handle } } } ... on Movie { minutes } } }',
  },
  {
    name: 'named fragment on an interface and @requires',
    query: 'fragment I on Item { id title } { items { ...I ... on Book { summary } } }',
  },
  {
    name: 'union with a failing field inside _entities',
    query: '{ search { __typename ... on Book { title rating } ... on Movie { title reviews { body } } } }',
  },
  {
    name: 'argument default and a non-null violation reported by the subgraph',
    query: '{ search(term: "alien") { ... on Movie { title reviews { stars body } } } }',
  },
  {
    name: 'aliases, including of __typename',
    query: '{ first: book(id: "b1") { t: title r: rating kind: __typename } second: book(id: "b2") { title } typename: __typename }',
  },
  {
    name: 'null bubbling from an entity the subgraph does not know',
    query: '{ book(id: "b3") { title reviews { id author { name handle } } } }',
  },
  { name: 'an entity resolver that throws', query: '{ book(id: "b4") { title reviews { stars author { name } } } }' },
  { name: 'an unknown root object', query: '{ book(id: "nope") { title reviews { stars } } }' },
  { name: 'a required variable not sent', query: 'query Q($id: ID!) { book(id: $id) { title } }', variables: {} },
  { name: 'a required variable sent as null', query: 'query Q($id: ID!) { book(id: $id) { title } }', variables: { id: null } },
  {
    name: 'a variable of the wrong type',
    query: 'query Q($withReviews: Boolean!) { items { id ... on Book @include(if: $withReviews) { title } } }',
    variables: { withReviews: 'yes' },
  },
  {
    name: '@skip and @include on fields and fragments, variables with defaults',
    query:
      'query Q($withReviews: Boolean!, $skipTitle: Boolean = false) { items { id title @skip(if: $skipTitle) ... on Book @include(if: $withReviews) { reviews { stars } } } }',
    variables: { withReviews: true },
  },
  {
    name: '@skip and @include, the other way round',
    query:
      'query Q($withReviews: Boolean!, $skipTitle: Boolean = false) { items { id title @skip(if: $skipTitle) ... on Book @include(if: $withReviews) { reviews { stars } } } }',
    variables: { withReviews: false, skipTitle: true },
  },
  {
    name: 'literal @include(if: false) on a whole subgraph branch',
    query: '{ items { id ... on Book @include(if: false) { summary rating } } }',
  },
  {
    name: 'fragment on a union member inside a named fragment',
    query: 'fragment R on SearchResult { ... on Book { id reviews { author { handle } } } } { search(term: "u") { ...R } }',
  },
  {
    name: 'the same entity twice in one fetch, with a failing field',
    query: '{ featured { id title rating summary reviews { author { name } } } }',
  },
  {
    name: 'one failing author referenced from two lists',
    query: '{ items { id ... on Book { reviews { author { name } } } ... on Movie { reviews { author { name } } } } }',
  },
  {
    name: 'a variable forwarded to a subgraph',
    query: 'query Q($id: ID!) { book(id: $id) { id title rating summary } }',
    variables: { id: 'b1' },
  },
  // Response names that Object.prototype also has: each must be the client's own key, and
  // nothing a client or subgraph sends may write to a prototype (checked after every case).
  {
    name: 'Object.prototype member names as root field aliases',
    query:
      '{ __proto__: book(id: "b1") { pwned: title } constructor: book(id: "b2") { id } toString: items { id } hasOwnProperty: book(id: "b3") { title } valueOf: __typename }',
  },
  {
    name: 'Object.prototype member names as nested aliases, leaves and objects',
    query:
      '{ book(id: "b1") { __proto__: title constructor: id toString: pages hasOwnProperty: __typename valueOf: reviews { __proto__: stars toString: body } } }',
  },
  {
    name: 'Object.prototype member names inside an entity fetch',
    query:
      '{ book(id: "b1") { reviews { __proto__: author { evil: name } constructor: author { name } toString: author { handle name } hasOwnProperty: id valueOf: stars } } }',
  },
  {
    name: 'Object.prototype member names in lists, merged from two subgraphs',
    query:
      '{ toString: items { __proto__: id constructor: title ... on Book { valueOf: reviews { hasOwnProperty: author { __proto__: name toString: id } } } } }',
  },
  {
    name: 'Object.prototype member names in fragments',
    query:
      'fragment F on Book { __proto__: title toString: reviews { constructor: author { __proto__: name } } } { search { ... on Book { ...F } ... on Movie { __proto__: title hasOwnProperty: minutes valueOf: reviews { stars } } } }',
  },
  {
    name: 'Object.prototype member names as @skip/@include variables',
    query:
      'query Q($toString: Boolean!, $valueOf: Boolean = true, $__proto__: Boolean = false) { items { id title @skip(if: $valueOf) ... on Book @include(if: $toString) { reviews { stars } } ... on Movie @include(if: $__proto__) { minutes } } }',
    variables: { toString: true },
  },
  {
    name: 'a variable named __proto__ forwarded to a subgraph',
    query:
      'query Q($__proto__: ID!, $constructor: ID = "b2") { first: book(id: $__proto__) { title } second: book(id: $constructor) { rating } }',
    variables: JSON.parse('{"__proto__":"b1"}'),
  },
];

/**
 * Every own property of the shared prototypes and of the functions on Object.prototype (a
 * merge through a `toString` key would land on Object.prototype.toString itself), by label.
 */
function prototypeProperties(): Map<string, unknown> {
  const owners: [string, object][] = [
    ['Object.prototype', Object.prototype],
    ['Object', Object],
    ['Function.prototype', Function.prototype],
    ['Array.prototype', Array.prototype],
  ];
  for (const name of Object.getOwnPropertyNames(Object.prototype)) {
    const value = Object.getOwnPropertyDescriptor(Object.prototype, name)?.value;
    if (typeof value === 'function') owners.push([`Object.prototype.${name}`, value]);
  }
  const properties = new Map<string, unknown>();
  for (const [label, owner] of owners) {
    for (const key of Reflect.ownKeys(owner)) {
      const descriptor = Object.getOwnPropertyDescriptor(owner, key);
      properties.set(`${label}[${String(key)}]`, descriptor?.value ?? descriptor?.get);
    }
  }
  return properties;
}

const pristine = prototypeProperties();

/** The prototype properties added, removed or replaced since the file started. */
function prototypeChanges(): string[] {
  const now = prototypeProperties();
  const changed = [...now.keys()].filter((key) => !pristine.has(key) || pristine.get(key) !== now.get(key));
  return changed.concat([...pristine.keys()].filter((key) => !now.has(key)));
}

let subgraphs: Awaited<ReturnType<typeof startExecutorSubgraphs>>;
let pair: Awaited<ReturnType<typeof startGatewayPair>>;

beforeAll(async () => {
  subgraphs = await startExecutorSubgraphs();
  pair = await startGatewayPair(subgraphs.supergraphSdl);
});

afterAll(async () => {
  await pair?.stop();
  await subgraphs?.close();
});

describe('the compiled executor on a corpus of queries', () => {
  for (const entry of corpus) {
    it(`answers like vanilla @apollo/gateway: ${entry.name}`, async () => {
      const expected = await pair.vanilla(entry.query, entry.variables);
      const actual = await pair.compiled(entry.query, entry.variables);
      expect(JSON.stringify(actual)).toBe(JSON.stringify(expected));
      expect(prototypeChanges()).toEqual([]);
    });
  }

  it('compiled every corpus operation instead of handing it back to the gateway', () => {
    expect(pair.executor.counts()).toEqual({ compiled: new Set(corpus.map((q) => q.query)).size, fallback: 0 });
  });
});
