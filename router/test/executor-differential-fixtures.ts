import { GraphQLError, GraphQLScalarType } from 'graphql';
import { startSubgraphsServer } from './executor-fixtures.ts';

/**
 * Three more subgraphs for the differential test, where errors and nulls are chosen by the
 * operation: every `mode: Mode` argument answers normally (OK), null (NULL), with an error
 * without a code (ERROR) or with one (ERROR_CODE), on nullable and non-null fields at every
 * level, inside and outside `_entities`. Lists of entities repeat elements and hold nulls
 * (`shelf`, `products(ids:)` with unknown ids), a non-null list element that is null
 * (`strictShelf`), entities a subgraph does not know (p3) or fails to resolve (p4), a
 * non-flat @requires (`shipping` needs `dims { weight }`), a custom scalar answering objects
 * (`meta`), an enum, and an interface and a union over entities of two subgraphs.
 */
const link =
  '@link(url: "https://specs.apollo.dev/federation/v2.3", import: ["@key", "@external", "@requires", "@provides", "@shareable"])';

type Mode = 'OK' | 'NULL' | 'ERROR' | 'ERROR_CODE';
/** The value, null, or an error, as the field's `mode` argument says. */
function byMode<T>(mode: Mode | undefined, value: T, label: string): T | null {
  if (mode === 'NULL') return null;
  if (mode === 'ERROR') throw new Error(`${label} failed`);
  if (mode === 'ERROR_CODE') throw new GraphQLError(`${label} refused`, { extensions: { code: 'REFUSED', label } });
  return value;
}

const products: Record<
  string,
  { id: string; name: string | null; kind: string; tags: (string | null)[] | null; dims: { weight: number; size: string } }
> = {
  p1: { id: 'p1', name: 'Lamp', kind: 'BOOK', tags: ['a', null, 'b'], dims: { weight: 2, size: 'S' } },
  p2: { id: 'p2', name: 'Desk', kind: 'GAME', tags: [], dims: { weight: 30, size: 'L' } },
  // Unknown to inventory: its entity comes back null without an error.
  p3: { id: 'p3', name: 'Ghost', kind: 'BOOK', tags: null, dims: { weight: 1, size: 'S' } },
  // Inventory's reference resolver throws for it.
  p4: { id: 'p4', name: 'Broken', kind: 'GAME', tags: ['x'], dims: { weight: 5, size: 'M' } },
  // A null name, and inventory's `label` requires it.
  p5: { id: 'p5', name: null, kind: 'BOOK', tags: ['y'], dims: { weight: 7, size: 'M' } },
};
const stores: Record<string, { id: string; title: string; productIds: (string | null)[] }> = {
  s1: { id: 's1', title: 'Main', productIds: ['p1', 'p2', null, 'p1'] },
  s2: { id: 's2', title: 'Outlet', productIds: ['p4', 'p3', 'p5'] },
};
const warehouses: Record<string, { code: string; city: string | null; managerId: string }> = {
  w1: { code: 'w1', city: 'Oslo', managerId: 'u1' },
  w2: { code: 'w2', city: null, managerId: 'u2' },
  w3: { code: 'w3', city: 'Rome', managerId: 'u9' },
};
const warehouseOf: Record<string, string> = { p1: 'w1', p2: 'w2', p4: 'w1', p5: 'w3' };
const people: Record<string, { id: string; name: string }> = {
  u1: { id: 'u1', name: 'Ida' },
  u2: { id: 'u2', name: 'Ola' },
};

const product = (id: string | null) => (id && products[id] ? { __typename: 'Product', ...products[id] } : null);
const store = (id: string) => (stores[id] ? { __typename: 'Store', ...stores[id] } : null);

const JSONScalar = new GraphQLScalarType({ name: 'JSON', serialize: (v) => v });

export const differentialSubgraphs = [
  {
    name: 'shop',
    sdl: `extend schema ${link}
type Query {
  product(id: ID!): Product
  products(ids: [ID!]!): [Product]
  node(id: ID!): Node
  nodes: [Node!]!
  things: [Thing]
  shelf: [Product]
  strictShelf: [Product!]
}
interface Node { id: ID! }
enum Kind { BOOK GAME }
type Dims @shareable { weight: Int! size: String }
type Product implements Node @key(fields: "id") { id: ID! name: String kind: Kind! tags: [String] dims: Dims }
type Store implements Node @key(fields: "id") { id: ID! title: String! products: [Product] }
union Thing = Product | Store`,
    resolvers: {
      Query: {
        product: (_: unknown, { id }: { id: string }) => product(id),
        products: (_: unknown, { ids }: { ids: string[] }) => ids.map(product),
        node: (_: unknown, { id }: { id: string }) => product(id) ?? store(id),
        nodes: () => [product('p1'), store('s1'), product('p4'), store('s2'), product('p1')],
        things: () => [store('s2'), null, product('p2'), product('p5'), store('s1')],
        shelf: () => ['p1', null, 'p1', 'p3', null, 'p2', 'p4'].map(product),
        strictShelf: () => ['p1', null, 'p2'].map(product),
      },
      Node: { __resolveType: (x: { __typename: string }) => x.__typename },
      Thing: { __resolveType: (x: { __typename: string }) => x.__typename },
      Product: { __resolveReference: (ref: { id: string }) => product(ref.id) },
      Store: {
        __resolveReference: (ref: { id: string }) => store(ref.id),
        products: (s: { productIds: (string | null)[] }) => s.productIds.map(product),
      },
    },
  },
  {
    name: 'inventory',
    sdl: `extend schema ${link}
scalar JSON
enum Mode { OK NULL ERROR ERROR_CODE }
type Dims @shareable { weight: Int! size: String }
type Product @key(fields: "id") {
  id: ID!
  name: String @external
  dims: Dims @external
  stock(mode: Mode = OK): Int
  strictStock(mode: Mode = OK): Int!
  label: String @requires(fields: "name")
  shipping(mode: Mode = OK): Float @requires(fields: "dims { weight }")
  warehouse: Warehouse
  meta: JSON
}
type Warehouse @key(fields: "code") { code: String! city(mode: Mode = OK): String manager: Person }
type Person @key(fields: "id") { id: ID! }`,
    resolvers: {
      JSON: JSONScalar,
      Product: {
        __resolveReference: (ref: { id: string }) => {
          if (ref.id === 'p4') throw new Error('inventory cannot load p4');
          return ref.id === 'p3' ? null : ref;
        },
        stock: (p: { id: string }, { mode }: { mode: Mode }) => byMode(mode, p.id.length * 7, `stock of ${p.id}`),
        strictStock: (p: { id: string }, { mode }: { mode: Mode }) => byMode(mode, 3, `strictStock of ${p.id}`),
        label: (p: { name: string | null }) => (p.name === null ? null : `[${p.name}]`),
        shipping: (p: { dims: { weight: number } }, { mode }: { mode: Mode }) => byMode(mode, p.dims.weight * 1.5, 'shipping'),
        warehouse: (p: { id: string }) => (warehouseOf[p.id] ? { code: warehouseOf[p.id] } : null),
        meta: (p: { id: string }) => (p.id === 'p1' ? { a: 1, toString: 'x', list: [1, null] } : p.id === 'p2' ? 'text' : null),
      },
      Warehouse: {
        __resolveReference: (ref: { code: string }) => ref,
        city: (w: { code: string }, { mode }: { mode: Mode }) => byMode(mode, warehouses[w.code]?.city ?? null, `city of ${w.code}`),
        manager: (w: { code: string }) => ({ id: warehouses[w.code]?.managerId ?? 'u0' }),
      },
    },
  },
  {
    name: 'people',
    sdl: `extend schema ${link}
enum Mode { OK NULL ERROR ERROR_CODE }
type Person @key(fields: "id") { id: ID! name(mode: Mode = OK): String! friends: [Person!] }
type Warehouse @key(fields: "code") { code: String! capacity(mode: Mode = OK): Int staff: [Person] }`,
    resolvers: {
      Person: {
        // u9 is unknown: a null entity.
        __resolveReference: (ref: { id: string }) => people[ref.id] ?? null,
        name: (p: { id: string; name: string }, { mode }: { mode: Mode }) => byMode(mode, p.name, `name of ${p.id}`),
        friends: (p: { id: string }) =>
          p.id === 'u1'
            ? [
                { id: 'u2', name: 'Ola' },
                { id: 'u1', name: 'Ida' },
              ]
            : [],
      },
      Warehouse: {
        __resolveReference: (ref: { code: string }) => ref,
        capacity: (w: { code: string }, { mode }: { mode: Mode }) => byMode(mode, w.code.length * 100, `capacity of ${w.code}`),
        staff: (w: { code: string }) => (w.code === 'w1' ? [{ id: 'u1', name: 'Ida' }, null, { id: 'u2', name: 'Ola' }] : null),
      },
    },
  },
];

/** The subgraphs on one loopback HTTP server (paths /shop, /inventory, /people). */
export function startDifferentialSubgraphs() {
  return startSubgraphsServer(differentialSubgraphs);
}
