import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mergeInto } from '../src/executor/index.ts';
import { startExecutorSubgraphs, startGatewayPair } from './executor-fixtures.ts';

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

const fetchesDuring = async <T>(work: () => Promise<T>) => {
  const before = subgraphs.fetches.length;
  const result = await work();
  return { result, fetches: subgraphs.fetches.slice(before) };
};

describe('the compiled executor', () => {
  it('leaves out a fragment excluded by @include and never calls the subgraph that would fill it', async () => {
    const query = 'query Q($r: Boolean!) { items { id ... on Book @include(if: $r) { reviews { stars } } } }';
    const { result, fetches } = await fetchesDuring(() => pair.compiled(query, { r: false }));
    expect(result.errors).toBeUndefined();
    expect(result.data).toEqual({ items: [{ id: 'b1' }, { id: 'b2' }, { id: 'b3' }, { id: 'b4' }, { id: 'm1' }] });
    expect(fetches.map((f) => f.subgraph)).toEqual(['catalog']);
  });

  it('includes it, fetched from the other subgraph, when the variable says so', async () => {
    const query = 'query Q($r: Boolean!) { items { id ... on Book @include(if: $r) { reviews { stars } } } }';
    const { result, fetches } = await fetchesDuring(() => pair.compiled(query, { r: true }));
    expect((result.data as { items: { reviews?: unknown }[] }).items[0]).toEqual({ id: 'b1', reviews: [{ stars: 5 }, { stars: 4 }] });
    expect(fetches.map((f) => f.subgraph)).toEqual(['catalog', 'reviews']);
  });

  it('applies @skip with a defaulted variable', async () => {
    const result = await pair.compiled('query Q($s: Boolean = true) { book(id: "b1") { id title @skip(if: $s) } }');
    expect(result.data).toEqual({ book: { id: 'b1' } });
  });

  it('picks fields by the runtime type on an interface and a union', async () => {
    const result = await pair.compiled('{ items { __typename ... on Book { pages } ... on Movie { minutes } } }');
    const items = (result.data as { items: Record<string, unknown>[] }).items;
    expect(items[0]).toEqual({ __typename: 'Book', pages: 412 });
    expect(items[4]).toEqual({ __typename: 'Movie', minutes: 117 });
  });

  it('maps an error raised inside _entities to the client path of the entity', async () => {
    const result = await pair.compiled('{ search { ... on Book { title rating } } }');
    const ratingError = result.errors?.find((e) => e.extensions?.code === 'RATING_UNAVAILABLE');
    expect(ratingError).toMatchObject({
      message: 'rating service timed out',
      path: ['search', 1, 'rating'],
      extensions: { serviceName: 'reviews' },
    });
    expect((result.data as { search: Record<string, unknown>[] }).search[1]).toEqual({ title: 'Emma', rating: null });
  });

  it('bubbles a null in a non-null field up to the nearest nullable parent and says where', async () => {
    const result = await pair.compiled('{ book(id: "b3") { title reviews { id author { name } } } }');
    expect(result.data).toEqual({ book: { title: 'Ulysses', reviews: null } });
    const paths = [...(result.errors ?? []), ...((result.extensions?.valueCompletion as { path: unknown[] }[]) ?? [])].map((e) => e.path);
    expect(paths).toContainEqual(['book', 'reviews', 0, 'author', 'name']);
  });

  it('reports a throwing entity resolver under the fetch path with the subgraph named, and nulls what it could not resolve', async () => {
    const result = await pair.compiled('{ book(id: "b4") { title reviews { stars author { name } } } }');
    // The subgraph reports the failure at ["_entities"] (no index): like the gateway, it is placed under the fetch's path.
    expect(result.errors?.[0]).toMatchObject({
      message: 'author a4 is locked',
      path: ['book', 'reviews', '@', 'author', '_entities'],
      extensions: { serviceName: 'people' },
    });
    expect(result.data).toEqual({ book: { title: 'Walden', reviews: null } });
  });

  it('hands introspection to the gateway executor and still answers it', async () => {
    const before = pair.executor.counts().fallback;
    const result = await pair.compiled('{ __schema { queryType { name } } }');
    expect(result.data).toEqual({ __schema: { queryType: { name: 'Query' } } });
    expect(pair.executor.counts().fallback).toBe(before + 1);
  });

  it('sends identical representations once and repeats the answer and its error for each entity', async () => {
    const { result, fetches } = await fetchesDuring(() => pair.compiled('{ featured { id rating } }'));
    const sent = fetches.filter((f) => f.subgraph === 'reviews').map((f) => JSON.parse(f.body).variables.representations);
    expect(sent).toEqual([
      [
        { __typename: 'Book', id: 'b2' },
        { __typename: 'Book', id: 'b1' },
        { __typename: 'Book', id: 'b3' },
      ],
    ]);
    expect(result.data).toEqual({
      featured: [
        { id: 'b2', rating: null },
        { id: 'b1', rating: 9 },
        { id: 'b2', rating: null },
        { id: 'b3', rating: 4 },
      ],
    });
    expect(result.errors?.map((e) => e.path)).toEqual([
      ['featured', 0, 'rating'],
      ['featured', 2, 'rating'],
    ]);
  });

  it('sends a query that the plan repeats at several paths once per execution, and answers as the gateway does', async () => {
    // The planner makes one reviews fetch per path (a, b, and under c), each with its own
    // operation name; with the same book they send the same query and the same representations.
    const query = `{
      a: book(id: "b1") { id rating reviews { id author { name } } }
      b: book(id: "b1") { id rating reviews { id author { name } } }
      c: featured { id rating }
      d: book(id: "b2") { rating }
      e: book(id: "b2") { rating }
    }`;
    const { result, fetches } = await fetchesDuring(() => pair.compiled(query));
    const vanilla = await fetchesDuring(() => pair.vanilla(query));
    expect(result).toEqual(vanilla.result);
    const reviewFetches = (list: typeof fetches) =>
      list
        .filter((f) => f.subgraph === 'reviews')
        .map((f) => JSON.parse(f.body).variables.representations)
        .sort((x, y) => JSON.stringify(x).localeCompare(JSON.stringify(y)));
    // Vanilla sends the same b1 query for a and for b; shared, it goes once. The people fetch
    // under a.reviews and b.reviews is one too, and every path still gets its own answer.
    // d and e share one b2 query, and its error is reported at both paths, as the gateway does.
    expect(result.errors?.map((e) => e.path)).toEqual(
      expect.arrayContaining([
        ['d', 'rating'],
        ['e', 'rating'],
      ]),
    );
    expect(reviewFetches(vanilla.fetches)).toHaveLength(5);
    expect(reviewFetches(fetches)).toEqual([
      [{ __typename: 'Book', id: 'b1' }],
      [
        { __typename: 'Book', id: 'b2' },
        { __typename: 'Book', id: 'b1' },
        { __typename: 'Book', id: 'b3' },
      ],
      [{ __typename: 'Book', id: 'b2' }],
    ]);
    expect(fetches.filter((f) => f.subgraph === 'people')).toHaveLength(1);
    expect(vanilla.fetches.filter((f) => f.subgraph === 'people')).toHaveLength(2);
  });

  it('compiles an operation once and reuses it', async () => {
    const query = '{ book(id: "b1") { id summary } }';
    await pair.compiled(query);
    const { compiled } = pair.executor.counts();
    await pair.compiled(query);
    expect(pair.executor.counts().compiled).toBe(compiled);
  });

  it('merges subgraph keys named like Object.prototype members as own keys and never into a prototype', () => {
    const prototypeNames = Object.getOwnPropertyNames(Object.prototype);
    const target: Record<string, unknown> = JSON.parse('{"id":"b1","__proto__":{"kept":1}}');
    // What a subgraph may send, unasked or under a client's alias: JSON.parse makes each key an own property.
    mergeInto(
      target,
      JSON.parse(
        '{"__proto__":{"added":2},"constructor":{"name":"x"},"toString":"t","hasOwnProperty":[1],"valueOf":null,"nested":{"__proto__":{"deep":3}}}',
      ),
    );
    expect(JSON.stringify(target)).toBe(
      '{"id":"b1","__proto__":{"kept":1,"added":2},"constructor":{"name":"x"},"toString":"t","hasOwnProperty":[1],"valueOf":null,"nested":{"__proto__":{"deep":3}}}',
    );
    expect(Object.getPrototypeOf(target)).toBe(Object.prototype);
    expect(Object.getOwnPropertyNames(Object.prototype)).toEqual(prototypeNames);
    expect(Object.getOwnPropertyNames(Object)).not.toContain('added');
    expect(({} as Record<string, unknown>).added).toBeUndefined();
  });
});
