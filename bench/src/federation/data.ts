/**
 * The data of The Guild's graphql-gateways-benchmark (federation scenario), re-created: six
 * users, nine products with their stock, eleven reviews. Every subgraph and the expected
 * response are derived from these tables, so they cannot drift apart.
 */
export interface UserRow {
  id: string;
  name: string;
  username: string;
  birthday: number;
}

export interface ProductRow {
  upc: string;
  name: string;
  price: number;
  weight: number;
  inStock: boolean;
}

export interface ReviewRow {
  id: string;
  body: string;
  productUpc: string;
}

export const users: UserRow[] = [
  ['1', 'Uri Goldshtein', 'urigo'],
  ['2', 'Dotan Simha', 'dotansimha'],
  ['3', 'Kamil Kisiela', 'kamilkisiela'],
  ['4', 'Arda Tanrikulu', 'ardatan'],
  ['5', 'Gil Gardosh', 'gilgardosh'],
  ['6', 'Laurin Quast', 'laurin'],
].map(([id, name, username]) => ({ id: id as string, name: name as string, username: username as string, birthday: 1234567890 }));

export const products: ProductRow[] = (
  [
    ['1', 'Table', 899, 100, true],
    ['2', 'Couch', 1299, 1000, false],
    ['3', 'Glass', 15, 20, false],
    ['4', 'Chair', 499, 100, false],
    ['5', 'TV', 1299, 1000, true],
    ['6', 'Lamp', 6999, 300, true],
    ['7', 'Grill', 3999, 2000, true],
    ['8', 'Fridge', 100000, 6000, false],
    ['9', 'Sofa', 9999, 800, true],
  ] as const
).map(([upc, name, price, weight, inStock]) => ({ upc, name, price, weight, inStock }));

const lorem =
  'Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat. Duis aute irure dolor in reprehenderit in voluptate velit esse cillum dolore eu fugiat nulla pariatur. Excepteur sint occaecat cupidatat non proident, sunt in culpa qui officia deserunt mollit anim id est laborum.';
const sedUt =
  'Sed ut perspiciatis unde omnis iste natus error sit voluptatem accusantium doloremque laudantium, totam rem aperiam, eaque ipsa quae ab illo inventore veritatis et quasi architecto beatae vitae dicta sunt explicabo. Nemo enim ipsam voluptatem quia voluptas sit aspernatur aut odit aut fugi';
const sedQuia =
  'sed quia consequuntur magni dolores eos qui ratione voluptatem sequi nesciunt. Neque porro quisquam est, qui dolorem ipsum quia dolor sit amet, consectetur, adipisci velit, sed quia non numquam eius modi tempora incidunt ut labore et dolore magnam aliquam quaerat voluptatem.';
const utEnim =
  'Ut enim ad minima veniam, quis nostrum exercitationem ullam corporis suscipit laboriosam, nisi ut aliquid ex ea commodi consequatur? Quis autem';
const atVero =
  'At vero eos et accusamus et iusto odio dignissimos ducimus qui blanditiis praesentium voluptatum deleniti atque corrupti quos dolores et quas molestias excepturi sint occaecati cupiditate non provident, similique sunt in culpa qui officia deserunt mollitia animi, id est laborum et dolorum fuga. Et harum quidem rerum facilis est et expedita distinctio. Nam libero tempore, cum soluta nobis est eligendi optio cumque nihil impedit quo minus id quod maxime placeat facere possimus, omnis voluptas assumenda est, omnis dolor repellendus. Temporibus autem quibusdam et aut officiis debitis aut rerum necessitatibus saepe eveniet ut et voluptates repudiandae sint et molestiae non recusandae. Itaque earum rerum hic tenetur a sapiente delectus, ut aut reiciendis voluptatibus maiores alias consequatur aut perferendis doloribus asperiores repellat.';

export const reviews: ReviewRow[] = (
  [
    [lorem, '1'],
    [sedUt, '1'],
    [sedQuia, '1'],
    [utEnim, '1'],
    [lorem, '2'],
    [sedUt, '2'],
    [sedQuia, '2'],
    [utEnim, '2'],
    [utEnim, '3'],
    [utEnim, '4'],
    [atVero, '4'],
  ] as const
).map(([body, productUpc], i) => ({ id: String(i + 1), body, productUpc }));

/** The benchmark's reviews subgraph answers every user's `reviews` with the first two reviews. */
export const reviewsOfAnyUser = reviews.slice(0, 2);

/** Every review's author is user 1, with the username the reviews subgraph provides. */
export const reviewAuthor = { id: '1', username: 'urigo' };

/** `topProducts(first: Int = 5)`. */
export const defaultTopProducts = 5;
