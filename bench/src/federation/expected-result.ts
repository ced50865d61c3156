import { createHash } from 'node:crypto';
import { buildSchema, execute, parse } from 'graphql';
import { defaultTopProducts, products, reviewAuthor, reviews, reviewsOfAnyUser, users } from './data.ts';
import { testQuery } from './test-query.ts';

/**
 * The expected `data` of TestQuery, computed WITHOUT federation: the same tables behind one
 * plain schema. Every gateway's responses are hashed against this, so a gateway that drops,
 * reorders or invents a field fails the run rather than looking fast.
 */
export function expectedTestQueryData(): unknown {
  const schema = buildSchema(`
    type Query { users: [User] topProducts(first: Int = ${defaultTopProducts}): [Product] }
    type User { id: ID! name: String username: String birthday: Int reviews: [Review] }
    type Review { id: ID! body: String product: Product author: User }
    type Product { upc: String! name: String price: Int weight: Int inStock: Boolean shippingEstimate: Int reviews: [Review] }
  `);
  type Review = (typeof reviews)[number];
  const user = (id: string) => {
    const row = users.find((u) => u.id === id);
    return {
      ...row,
      username: id === reviewAuthor.id ? reviewAuthor.username : row?.username,
      reviews: () => reviewsOfAnyUser.map(review),
    };
  };
  const product = (upc: string) => {
    const row = products.find((p) => p.upc === upc);
    return { ...row, shippingEstimate: null, reviews: () => reviews.filter((r) => r.productUpc === upc).map(review) };
  };
  const review = (r: Review): Record<string, unknown> => ({
    id: r.id,
    body: r.body,
    product: () => product(r.productUpc),
    author: () => user(reviewAuthor.id),
  });
  const result = execute({
    schema,
    document: parse(testQuery),
    rootValue: {
      users: () => users.map((u) => user(u.id)),
      topProducts: (args: { first: number }) => products.slice(0, args.first).map((p) => product(p.upc)),
    },
  });
  if ('then' in result) throw new Error('expected a synchronous result');
  if (result.errors?.length) throw new Error(`expected-data schema failed: ${result.errors[0]?.message}`);
  return JSON.parse(JSON.stringify(result.data));
}

export function hashData(data: unknown): string {
  return createHash('sha256').update(JSON.stringify(data)).digest('hex');
}
