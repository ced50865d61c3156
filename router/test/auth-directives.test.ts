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

function run(query: string, principal: Principal | undefined) {
  const result = filterOperation(schema, requirements, parse(query), undefined, principal);
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
