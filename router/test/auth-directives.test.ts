import type { Principal } from '@ghostpay/platform';
import { buildASTSchema, parse, print, validate } from 'graphql';
import { describe, expect, it } from 'vitest';
import { fillRemovedWithNull, filterOperation, markSecurityFeaturesEnforced, readAuthRequirements } from '../src/auth-directives.ts';
import { composeSubgraphs } from '../src/compose-supergraph.ts';

const sdl = `
extend schema @link(url: "https://specs.apollo.dev/federation/v2.9", import: ["@key", "@authenticated", "@requiresScopes"])
type Query {
  open: String
  account(id: ID!): Account @authenticated
  secret(note: String): Secret
  either: String @requiresScopes(scopes: [["a", "b"], ["c"]])
}
type Account @key(fields: "id") {
  id: ID!
  name: String
  balance: Int @requiresScopes(scopes: [["money"]])
  secret: Secret
}
"A type whose every field returning it needs the scope."
type Secret @requiresScopes(scopes: [["secrets"]]) {
  text: String
}
`;

const outcome = composeSubgraphs([{ name: 'only', url: 'http://127.0.0.1:1/graphql', sdl }]);
if (!outcome.ok) throw new Error(outcome.errors.join('\n'));
const schema = buildASTSchema(parse(markSecurityFeaturesEnforced(outcome.supergraphSdl)), { assumeValidSDL: true });
const requirements = readAuthRequirements(schema);
const caller = (scopes: string[]): Principal => ({ userId: 'u', role: 'user', scopes, apiKeyId: 'k', tokenId: 't', expiresAt: 0 });

function run(query: string, principal: Principal | undefined, variables?: Record<string, unknown>) {
  const result = filterOperation(schema, requirements, parse(query), undefined, principal, variables);
  if (result.document) expect(validate(schema, result.document), print(result.document)).toEqual([]);
  return {
    query: result.document ? print(result.document).replace(/\s+/g, ' ').trim() : undefined,
    errors: result.errors.map((e) => ({ code: e.extensions.code, path: e.path })),
    removedPaths: result.removedPaths,
  };
}

describe('removing unauthorized fields from an operation', () => {
  it('leaves an operation the caller may run untouched', () => {
    const result = filterOperation(schema, requirements, parse('{ open account(id: "1") { name } }'), undefined, caller([]));
    expect(result.changed).toBe(false);
  });

  it('removes a field inside a fragment, keeps the fragment for the rest, and reports the path', () => {
    const result = run('query Q { account(id: "1") { ...A } } fragment A on Account { name balance }', caller([]));
    expect(result.query).toBe('query Q { account(id: "1") { ...A } } fragment A on Account { name }');
    expect(result.errors).toEqual([{ code: 'FORBIDDEN', path: ['account', 'balance'] }]);
    expect(result.removedPaths).toEqual([['account', 'balance']]);
  });

  it('drops a fragment left empty, its spreads, fields left empty and variables only removed fields used', () => {
    const result = run(
      'query Q($id: ID!, $n: String) { open secret(note: $n) { text } account(id: $id) { ...B } } fragment B on Account { balance }',
      caller([]),
    );
    // B held only balance, so the spread goes, then account (nothing left), then $id and $n.
    expect(result.query).toBe('query Q { open }');
    expect(result.errors).toEqual([
      { code: 'FORBIDDEN', path: ['secret'] },
      { code: 'FORBIDDEN', path: ['account', 'balance'] },
    ]);
  });

  it('applies a directive on a type to every field returning it, under aliases and inline fragments', () => {
    const result = run('{ account(id: "1") { ... on Account { name hidden: secret { text } } } }', caller(['money']));
    expect(result.query).toBe('{ account(id: "1") { ... on Account { name } } }');
    expect(result.errors).toEqual([{ code: 'FORBIDDEN', path: ['account', 'hidden'] }]);
  });

  it('reads @requiresScopes as (a AND b) OR c', () => {
    expect(run('{ either }', caller(['a'])).errors).toEqual([{ code: 'FORBIDDEN', path: ['either'] }]);
    expect(run('{ either }', caller(['a', 'b'])).errors).toEqual([]);
    expect(run('{ either }', caller(['c'])).errors).toEqual([]);
  });

  it('answers UNAUTHENTICATED without a token and refuses when nothing is left', () => {
    const result = run('{ account(id: "1") { name } either }', undefined);
    expect(result.query).toBeUndefined();
    expect(result.errors.map((e) => e.code)).toEqual(['UNAUTHENTICATED', 'UNAUTHENTICATED']);
  });

  it('fills removed nullable fields with null inside lists and objects, never over present data', () => {
    const data = { account: [{ name: 'x' }, { name: 'y', balance: 3 }], other: null };
    fillRemovedWithNull(data, [
      ['account', 'balance'],
      ['other', 'balance'],
    ]);
    expect(data).toEqual({
      account: [
        { name: 'x', balance: null },
        { name: 'y', balance: 3 },
      ],
      other: null,
    });
  });
});

describe('@skip and @include when checking the auth directives', () => {
  const user = caller([]);
  const forbidden = (...paths: string[][]) => paths.map((path) => ({ code: 'FORBIDDEN', path }));

  it('does not check a field the operation skips with a literal condition', () => {
    expect(run('{ open secret @include(if: false) { text } }', user)).toMatchObject({ errors: [], removedPaths: [] });
    expect(run('{ open secret @skip(if: true) { text } }', user).errors).toEqual([]);
    expect(run('{ open secret @include(if: true) @skip(if: true) { text } }', user).errors).toEqual([]);
  });

  it('leaves an operation whose only denied field is skipped as it is', () => {
    const result = filterOperation(schema, requirements, parse('{ secret @include(if: false) { text } }'), undefined, user);
    expect(result.changed).toBe(false);
    expect(result.errors).toEqual([]);
  });

  it('checks a field whose condition includes it, literal or variable', () => {
    expect(run('{ open secret @include(if: true) { text } }', user).errors).toEqual(forbidden(['secret']));
    expect(run('{ open secret @skip(if: false) { text } }', user).errors).toEqual(forbidden(['secret']));
    expect(run('{ open secret @include(if: true) @skip(if: false) { text } }', user).errors).toEqual(forbidden(['secret']));
    const query = 'query ($show: Boolean!) { open secret @include(if: $show) { text } }';
    expect(run(query, user, { show: true }).errors).toEqual(forbidden(['secret']));
    expect(run(query, user, { show: false }).errors).toEqual([]);
  });

  it("evaluates a variable's default value, and a sent value over it", () => {
    const query = 'query ($hide: Boolean = true) { open secret @skip(if: $hide) { text } }';
    expect(run(query, user).errors).toEqual([]);
    expect(run(query, user, { hide: false }).errors).toEqual(forbidden(['secret']));
  });

  it('checks every field when the variables do not coerce (execution refuses them anyway)', () => {
    const query = 'query ($show: Boolean!) { open secret @include(if: $show) { text } }';
    expect(run(query, user).errors).toEqual(forbidden(['secret']));
    expect(run(query, user, { show: 'no' }).errors).toEqual(forbidden(['secret']));
    expect(run(query, user, { show: null }).errors).toEqual(forbidden(['secret']));
  });

  it('skips fields, inline fragments and spreads inside fragments, and checks the included ones', () => {
    const spread = 'query ($x: Boolean!) { account(id: "1") { name ...A @include(if: $x) } } fragment A on Account { balance }';
    expect(run(spread, user, { x: false }).errors).toEqual([]);
    expect(run(spread, user, { x: true }).errors).toEqual(forbidden(['account', 'balance']));
    const inFragment = 'query ($hide: Boolean!) { account(id: "1") { ...A } } fragment A on Account { name balance @skip(if: $hide) }';
    expect(run(inFragment, user, { hide: true }).errors).toEqual([]);
    expect(run(inFragment, user, { hide: false }).errors).toEqual(forbidden(['account', 'balance']));
    const inline = '{ account(id: "1") { name ... on Account @include(if: false) { balance } } }';
    expect(run(inline, user).errors).toEqual([]);
    expect(run(inline.replace('false', 'true'), user).errors).toEqual(forbidden(['account', 'balance']));
  });

  it('still checks a field that is skipped in one place and included in another', () => {
    const result = run('{ account(id: "1") { name balance @include(if: false) again: balance } }', user);
    expect(result.errors).toEqual(forbidden(['account', 'again']));
    expect(result.query).toBe('{ account(id: "1") { name balance @include(if: false) } }');
    const twice = run(
      '{ a: account(id: "1") { name ...A @include(if: false) } b: account(id: "2") { name ...A } } fragment A on Account { balance }',
      user,
    );
    expect(twice.errors).toEqual(forbidden(['b', 'balance']));
  });
});
