import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { ApolloServer, HeaderMap } from '@apollo/server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// patches/@apollo+server+5.5.1.patch remembers what Apollo Server parsed from the Accept and
// Content-Type headers (per header value, bounded) and hashes queries with node:crypto directly
// (bench/RESULTS.md, change 29). These tests hold what that must not change: the content type
// chosen for each Accept value, the CSRF decision for each Content-Type value, and the APQ hash
// check, with values interleaved so that a memo answering for the wrong value would show.

type MemoizeByHeader = <T>(compute: (value: string | undefined) => T, max?: number) => (value: string | undefined) => T;

// typeDefs, not a schema built here: Vite would hand this file graphql's ESM build and Apollo
// Server its CommonJS one (two graphql realms; see vitest.config.ts).
let server: ApolloServer;

beforeAll(async () => {
  server = new ApolloServer({
    typeDefs: 'type Query { hello: String }',
    resolvers: { Query: { hello: () => 'world' } },
    csrfPrevention: true,
    includeStacktraceInErrorResponses: false,
  });
  await server.start();
});
afterAll(() => server.stop());

async function post(headers: Record<string, string>, body: Record<string, unknown> = { query: '{ hello }' }) {
  const response = await server.executeHTTPGraphQLRequest({
    httpGraphQLRequest: { method: 'POST', headers: new HeaderMap(Object.entries(headers)), search: '', body },
    context: async () => ({}),
  });
  const text = response.body.kind === 'complete' ? response.body.string : '';
  return { status: response.status ?? 200, contentType: response.headers.get('content-type'), text };
}

describe('patched @apollo/server: Accept negotiation', () => {
  // [Accept, chosen content type or 406]
  const cases: [string | undefined, string | 406][] = [
    [undefined, 'application/json; charset=utf-8'],
    ['application/graphql-response+json', 'application/graphql-response+json; charset=utf-8'],
    ['application/json', 'application/json; charset=utf-8'],
    ['application/json;q=0.5, application/graphql-response+json', 'application/graphql-response+json; charset=utf-8'],
    ['text/html', 406],
    ['*/*', 'application/json; charset=utf-8'],
    ['application/graphql-response+json;q=0.1, application/json', 'application/json; charset=utf-8'],
    ['', 'application/json; charset=utf-8'],
    ['image/png, text/plain', 406],
  ];

  it('chooses the same content type for every Accept value, in any order, however often it was seen', async () => {
    const order = [...cases, ...[...cases].reverse(), ...cases.filter((_, i) => i % 2 === 1), ...cases];
    for (const [accept, expected] of order) {
      const response = await post({ 'content-type': 'application/json', ...(accept === undefined ? {} : { accept }) });
      if (expected === 406) {
        expect(response.status, `accept ${accept}`).toBe(406);
      } else {
        expect(response.status, `accept ${accept}`).toBe(200);
        expect(response.contentType, `accept ${accept}`).toBe(expected);
        expect(JSON.parse(response.text)).toEqual({ data: { hello: 'world' } });
      }
    }
  });
});

describe('patched @apollo/server: CSRF prevention by Content-Type', () => {
  // [Content-Type, blocked without a preflight header]
  const cases: [string, boolean][] = [
    ['application/json', false],
    ['text/plain', true],
    ['application/json; charset=utf-8', false],
    ['TEXT/PLAIN; charset=utf-8', true],
    ['multipart/form-data; boundary=x', true],
    ['application/x-www-form-urlencoded', true],
    ['not a mime type', false], // unparseable: a browser cannot send it without a preflight
  ];

  it('blocks exactly the simple-request content types, in any order, however often it was seen', async () => {
    for (const [contentType, blocked] of [...cases, ...[...cases].reverse(), ...cases]) {
      const response = await post({ 'content-type': contentType });
      if (blocked) {
        expect(response.status, contentType).toBe(400);
        expect(response.text, contentType).toContain('Cross-Site Request Forgery');
        const preflighted = await post({ 'content-type': contentType, 'apollo-require-preflight': 'true' });
        expect(preflighted.text, contentType).not.toContain('Cross-Site Request Forgery');
      } else {
        expect(response.text, contentType).not.toContain('Cross-Site Request Forgery');
      }
    }
  });
});

describe('patched @apollo/server: query hashes', () => {
  it('accepts an automatic persisted query whose sha256 matches and refuses one that does not', async () => {
    const query = '{ hello }';
    const sha256Hash = createHash('sha256').update(query).digest('hex');
    const matching = await post(
      { 'content-type': 'application/json' },
      { query, extensions: { persistedQuery: { version: 1, sha256Hash } } },
    );
    expect(JSON.parse(matching.text)).toEqual({ data: { hello: 'world' } });
    const hashOnly = await post({ 'content-type': 'application/json' }, { extensions: { persistedQuery: { version: 1, sha256Hash } } });
    expect(JSON.parse(hashOnly.text)).toEqual({ data: { hello: 'world' } });
    const mismatched = await post(
      { 'content-type': 'application/json' },
      { query, extensions: { persistedQuery: { version: 1, sha256Hash: sha256Hash.replace(/^./, (c) => (c === '0' ? '1' : '0')) } } },
    );
    expect(mismatched.status).toBe(400);
    expect(mismatched.text).toContain('provided sha does not match query');
  });
});

describe('memoizeByHeader (the patch adds it to @apollo/server/dist/{esm,cjs}/utils)', () => {
  const apolloEntry = createRequire(import.meta.url).resolve('@apollo/server');
  const load = async (flavour: 'esm' | 'cjs'): Promise<MemoizeByHeader> => {
    const file = apolloEntry.replace(/dist\/(esm|cjs)\/index\.js$/, `dist/${flavour}/utils/memoizeByHeader.js`);
    const module = (await import(pathToFileURL(file).href)) as {
      memoizeByHeader?: MemoizeByHeader;
      default?: { memoizeByHeader: MemoizeByHeader };
    };
    const memoize = module.memoizeByHeader ?? module.default?.memoizeByHeader;
    if (!memoize) throw new Error(`memoizeByHeader missing in the ${flavour} build: is the patch applied?`);
    return memoize;
  };

  for (const flavour of ['esm', 'cjs'] as const) {
    it(`${flavour}: computes each value once, tells an absent header from an empty one, and keeps at most max values`, async () => {
      const memoizeByHeader = await load(flavour);
      const computed: (string | undefined)[] = [];
      const lengthOf = memoizeByHeader((value) => {
        computed.push(value);
        return value === undefined ? -1 : value.length;
      }, 3);
      expect([lengthOf('ab'), lengthOf('ab'), lengthOf(undefined), lengthOf(undefined), lengthOf(''), lengthOf('')]).toEqual([
        2, 2, -1, -1, 0, 0,
      ]);
      expect(computed).toEqual(['ab', undefined, '']);
      // 'ab' and '' fill two of three slots; two more values overflow the memo, which starts over.
      lengthOf('abc');
      lengthOf('abcd');
      computed.length = 0;
      expect([lengthOf('abcd'), lengthOf('ab'), lengthOf(undefined)]).toEqual([4, 2, -1]);
      expect(computed).toEqual(['ab']);
    });
  }
});
