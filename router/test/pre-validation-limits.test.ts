import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { getIntrospectionQuery, getOperationAST, parse, validate } from 'graphql';
import { describe, expect, it } from 'vitest';
import { computeAuthMatrix } from '../src/auth-matrix.ts';
import { defaultOperationLimits, enforceOperationLimits, measureOperation, operationLimitsError } from '../src/operation-limits.ts';
import { definitionsError, preValidationCheck, preValidationRule } from '../src/overlap-limits.ts';
import { apiSchemaFromSupergraph } from '../src/subscriptions/api-schema.ts';
import { composeRepoSupergraph, countingOverlapRules, post, repoRoot, withRouter } from './router-harness.ts';
import { idleSubscriptions, wsClient } from './subscriptions-harness.ts';

/**
 * Before graphql-js validates a document, the router refuses the shapes that make validation
 * costly and that are refused anyway: besides the repeated-fields limit (repeated-fields.test.ts),
 * spreads of fragments the document does not define, and the operation limits that do not depend
 * on variables (depth, aliases, root fields) of every operation and fragment in it. Each document
 * below is within the 2000-token cap and the repeated-fields limit, and cost graphql-js 4–12 ms of
 * validation (997 unknown spreads: 20–30 ms) before those limits refused it. Measured by counting
 * (the selection sets the overlap check visits), never by the clock.
 */

const range = (n: number) => Array.from({ length: n }, (_, i) => i);
const tokens = (text: string) => {
  // Within the router's token cap: parsing with it throws past 2000.
  parse(text, { maxTokens: 2000 });
  return text;
};

const expensive: Record<string, { query: string; extensions: Record<string, unknown>; message: RegExp }> = {
  '333 distinct aliased root fields': {
    query: tokens(
      `{ ${range(333)
        .map((i) => `a${i}: me { id }`)
        .join(' ')} }`,
    ),
    extensions: { code: 'OPERATION_LIMIT_EXCEEDED', limit: 'aliases', max: 15, actual: 333 },
    message: /^Operation aliases 333 exceeds the limit of 15$/,
  },
  '181 fragments, each one aliased __typename, spread in one selection set': {
    query: tokens(
      `{ me { ${range(181)
        .map((i) => `...F${i}`)
        .join(' ')} } } ${range(181)
        .map((i) => `fragment F${i} on User { t${i}: __typename }`)
        .join(' ')}`,
    ),
    extensions: { code: 'OPERATION_LIMIT_EXCEEDED', limit: 'aliases', max: 15, actual: 181 },
    message: /^Operation aliases 181 exceeds the limit of 15$/,
  },
  '20 copies of me, 16 aliased apiKeys in each': {
    query: tokens(
      `{ ${range(20)
        .map(
          () =>
            `me { ${range(16)
              .map((i) => `a${i}: apiKeys { id }`)
              .join(' ')} }`,
        )
        .join(' ')} }`,
    ),
    extensions: { code: 'OPERATION_LIMIT_EXCEEDED', limit: 'aliases', max: 15, actual: 320 },
    message: /^Operation aliases 320 exceeds the limit of 15$/,
  },
  '20 copies of me, 7 levels of cards.edges.node.owner in each': {
    query: tokens(
      `{ ${range(20)
        .map(
          () =>
            `me { ${range(7)
              .map(() => 'cards { edges { node { owner {')
              .join(' ')} id ${range(7)
              .map(() => '} } } }')
              .join(' ')} }`,
        )
        .join(' ')} }`,
    ),
    extensions: { code: 'OPERATION_LIMIT_EXCEEDED', limit: 'depth', max: 10, actual: 30 },
    message: /^Operation depth 30 exceeds the limit of 10$/,
  },
  '180 fragments on the root type, each spreading the next twice': {
    query: tokens(
      `{ ...F0 } ${range(180)
        .map((i) => `fragment F${i} on Query { ${i + 1 < 180 ? `...F${i + 1} ...F${i + 1}` : 'me { id }'} }`)
        .join(' ')}`,
    ),
    extensions: { code: 'OPERATION_LIMIT_EXCEEDED', limit: 'rootFields', max: 10, actual: 2 ** 179 },
    message: /^Operation root fields .* exceeds the limit of 10$/,
  },
  '997 spreads of fragments the document does not define': {
    query: tokens(
      `{ me { ${range(997)
        .map((i) => `...X${i}`)
        .join(' ')} } }`,
    ),
    extensions: { code: 'GRAPHQL_VALIDATION_FAILED' },
    message: /^Unknown fragment "X0"\.$/,
  },
  'a fragment no operation spreads, reaching 150 aliases': {
    query: tokens(
      `{ me { id } } fragment Big on User { ${range(150)
        .map((i) => `...F${i}`)
        .join(' ')} } ${range(150)
        .map((i) => `fragment F${i} on User { t${i}: __typename }`)
        .join(' ')}`,
    ),
    extensions: { code: 'OPERATION_LIMIT_EXCEEDED', limit: 'aliases', max: 15, actual: 150 },
    message: /^Fragment Big: aliases 150 exceeds the limit of 15$/,
  },
};

/** Card's scalar fields: 210 fragments over 14 keys repeat each key 15 times, within the repeated-fields limit. */
const cardFields = [
  'id',
  'status',
  'amount',
  'currency',
  'currencyExponent',
  'bin',
  'last4',
  'brand',
  'expMonth',
  'expYear',
  'expiresAt',
  'createdAt',
  'usedAt',
  'canceledAt',
];

/** Documents within every other limit (the tokens, the repeated fields, each definition's shape) that hold many definitions. */
const manyDefinitions: Record<string, { query: string; actual: number }> = {
  // graphql-js's overlap check compares every pair of fragments spread in one selection set: ~10 ms of validation.
  '210 one-field fragments spread in one selection set': {
    query: tokens(
      `{ card(id: "1") { ${range(210)
        .map((i) => `...F${i}`)
        .join(' ')} } } ${range(210)
        .map((i) => `fragment F${i} on Card { ${cardFields[i % cardFields.length]} }`)
        .join(' ')}`,
    ),
    actual: 211,
  },
  // Each operation is validated on its own: 3–4 ms.
  '240 operations': {
    query: tokens(
      range(240)
        .map((i) => `query Q${i} { me { id } }`)
        .join(' '),
    ),
    actual: 240,
  },
};

const supergraphSdl = composeRepoSupergraph();
const schema = apiSchemaFromSupergraph(supergraphSdl);
const check = preValidationCheck(defaultOperationLimits);
/** The check with the definitions limit lifted: the documents of `expensive` hold up to 182 definitions, and each is refused for its own shape. */
const checkShapes = preValidationCheck({ ...defaultOperationLimits, maxDefinitions: Number.POSITIVE_INFINITY });

describe('the definitions limit, checked first', () => {
  for (const [what, { query, actual }] of Object.entries(manyDefinitions)) {
    it(`refuses ${what} before the overlap check visits a selection set, and only it breaks a limit`, () => {
      const { counter, rules } = countingOverlapRules();
      const errors = validate(schema, parse(query), [...rules, preValidationRule(check)]);
      expect(errors.map((e) => e.message)).toEqual([`Document definitions ${actual} exceeds the limit of 50`]);
      expect(errors[0]?.extensions).toMatchObject({ code: 'OPERATION_LIMIT_EXCEEDED', limit: 'definitions', max: 50, actual });
      expect(counter.selectionSets).toBe(0);
      // Every other check passes it, and validation has nothing to say: graphql-js would validate all of it.
      expect(checkShapes(parse(query))).toBeUndefined();
      const without = countingOverlapRules();
      expect(validate(schema, parse(query), without.rules)).toEqual([]);
      expect(without.counter.selectionSets).toBeGreaterThan(actual);
    });
  }

  it('counts operations and fragments alike, up to the limit', () => {
    const document = (operations: number, fragments: number) =>
      parse(
        `${range(operations)
          .map((i) => `query Q${i} { me { ...F0 } }`)
          .join(' ')} ${range(fragments)
          .map((i) => `fragment F${i} on User { id }`)
          .join(' ')}`,
      );
    expect(definitionsError(document(1, 49), 50)).toBeUndefined();
    expect(definitionsError(document(25, 25), 50)).toBeUndefined();
    expect(definitionsError(document(26, 25), 50)?.extensions).toMatchObject({ limit: 'definitions', max: 50, actual: 51 });
    expect(definitionsError(document(1, 50), 50)?.extensions).toMatchObject({ limit: 'definitions', max: 50, actual: 51 });
  });

  it('comes before the other checks: the many-fragment documents below are refused for it at the default', () => {
    for (const what of [
      '181 fragments, each one aliased __typename, spread in one selection set',
      '180 fragments on the root type, each spreading the next twice',
      'a fragment no operation spreads, reaching 150 aliases',
    ]) {
      expect(check(parse(expensive[what]!.query))?.extensions, what).toMatchObject({ limit: 'definitions', max: 50 });
    }
  });
});

describe('the pre-validation check, in the order Apollo Server runs it (after specifiedRules, one traversal)', () => {
  for (const [what, { query, extensions, message }] of Object.entries(expensive)) {
    it(`refuses ${what} before the overlap check visits a selection set`, () => {
      const { counter, rules } = countingOverlapRules();
      const errors = validate(schema, parse(query), [...rules, preValidationRule(checkShapes)]);
      expect(errors.map((e) => e.message)).toEqual([expect.stringMatching(message)]);
      expect(errors[0]?.extensions).toMatchObject(extensions);
      expect(counter.selectionSets).toBe(0);
      // Without it graphql-js runs its overlap check over the document.
      const without = countingOverlapRules();
      validate(schema, parse(query), without.rules);
      expect(without.counter.selectionSets).toBeGreaterThan(0);
    });
  }

  it('gives a one-operation document the refusal the operation limits give it after validation', () => {
    for (const query of [
      `{ me { ${range(16)
        .map((i) => `a${i}: id`)
        .join(' ')} } }`,
      `query Deep { me { ${range(3)
        .map(() => 'cards { edges { node { owner {')
        .join(' ')} id ${range(3)
        .map(() => '} } } }')
        .join(' ')} } }`,
      `{ ${range(11)
        .map((i) => `c${i}: card(id: "${i}") { id }`)
        .join(' ')} }`,
      '{ ...Q ...Q } fragment Q on Query { a: me { id } b: me { id } c: me { id } d: me { id } e: me { id } f: me { id } }',
      `query Many { me { ...A } } fragment A on User { ${range(10)
        .map((i) => `a${i}: id`)
        .join(' ')} ...B } fragment B on User { ${range(10)
        .map((i) => `b${i}: id`)
        .join(' ')} }`,
    ]) {
      const document = parse(query);
      const operation = getOperationAST(document);
      if (!operation) throw new Error('no operation');
      let after: unknown;
      try {
        enforceOperationLimits(measureOperation(document, operation), defaultOperationLimits);
      } catch (error) {
        after = error;
      }
      const before = operationLimitsError(document, defaultOperationLimits);
      expect(after, query).toBeDefined();
      expect(before?.message, query).toBe((after as Error).message);
      const { http: _, ...extensions } = (after as { extensions: Record<string, unknown> }).extensions;
      expect(before?.extensions, query).toEqual(extensions);
    }
  });

  it('leaves cost, which depends on the variables, to after validation', () => {
    // 100 × 100 cards: past the cost limit with these page sizes, within it with others.
    const document = parse('query ($n: Int) { cards(first: $n) { edges { node { charges { id } } } } }');
    expect(operationLimitsError(document, defaultOperationLimits)).toBeUndefined();
  });

  it('passes every operation in the repo: the manifest, the bench, k6, the auth matrix, the subscriptions README', () => {
    const manifest = (
      JSON.parse(readFileSync(resolve(repoRoot, 'openapi-bridge/persisted-queries.json'), 'utf8')) as { operations: { body: string }[] }
    ).operations.map((o) => o.body);
    const k6 = ['load.js', 'smoke.js', 'spike.js', 'rate-limit.js'].flatMap((file) =>
      [...readFileSync(resolve(repoRoot, 'k6', file), 'utf8').matchAll(/'((?:query|mutation|subscription) [^']*)'/g)].map(
        (m) => m[1] as string,
      ),
    );
    const bench = readFileSync(resolve(repoRoot, 'bench/src/federation/test-query.ts'), 'utf8').match(/`([^`]*)`/)?.[1] ?? '';
    const watch = readFileSync(resolve(repoRoot, 'router/src/subscriptions/README.md'), 'utf8').match(/```graphql\n([^`]*)```/)?.[1] ?? '';
    const matrix = computeAuthMatrix(supergraphSdl).map((row) => row.document);
    // The standard introspection query every client tool sends (admins only): 1 operation, 3 fragments.
    const corpus = [...manifest, ...k6, bench, watch, ...matrix, getIntrospectionQuery()];
    expect(manifest.length).toBeGreaterThanOrEqual(10);
    expect(k6.length).toBe(4);
    expect(matrix.length).toBeGreaterThan(20);
    for (const query of corpus) {
      expect(query.trim(), 'an operation was found').not.toBe('');
      expect(check(parse(query)), query).toBeUndefined();
    }
  });
});

describe('the router refuses them before validation, on POST and on the subscription transports', () => {
  const setup = withRouter({
    supergraphSdl,
    env: { ROUTER_RATE_LIMIT_PER_MINUTE: '1000', ROUTER_MAX_DEFINITIONS: '30' },
    subscriptions: idleSubscriptions,
    bearer: { userId: 'usr_m', role: 'merchant', apiKeyId: 'key_prevalidation' },
  });
  const hits = () => Object.values(setup.subgraphs.hits).reduce((a, b) => a + b, 0);
  /** Past the alias limit, with an unknown field that validation would report (GRAPHQL_VALIDATION_FAILED). */
  const aliased = `{ me { ${range(40)
    .map((i) => `a${i}: id`)
    .join(' ')} nope } }`;

  it('POST: answers 400 OPERATION_LIMIT_EXCEEDED for the aliases, not the validation error', async () => {
    const before = hits();
    const response = await post(setup.router.graphqlUrl, { query: aliased }, { authorization: setup.authorization });
    expect(response.status).toBe(400);
    expect(response.body).toEqual({
      errors: [
        {
          message: 'Operation aliases 40 exceeds the limit of 15',
          extensions: { code: 'OPERATION_LIMIT_EXCEEDED', limit: 'aliases', max: 15, actual: 40 },
        },
      ],
    });
    expect(hits()).toBe(before);
  });

  it('POST: answers 400 OPERATION_LIMIT_EXCEEDED for a document past ROUTER_MAX_DEFINITIONS, and runs one at it', async () => {
    // A chain of fragments, each spreading the next: within every other limit.
    const document = (fragments: number) =>
      `query Me { me { ...F0 } } ${range(fragments)
        .map((i) => `fragment F${i} on User { ${i + 1 < fragments ? `...F${i + 1}` : 'id'} }`)
        .join(' ')}`;
    const before = hits();
    const refused = await post(setup.router.graphqlUrl, { query: document(30) }, { authorization: setup.authorization });
    expect(refused.status).toBe(400);
    expect(refused.body).toEqual({
      errors: [
        {
          message: 'Document definitions 31 exceeds the limit of 30',
          extensions: { code: 'OPERATION_LIMIT_EXCEEDED', limit: 'definitions', max: 30, actual: 31 },
        },
      ],
    });
    expect(hits()).toBe(before);
    const served = await post(setup.router.graphqlUrl, { query: document(29) }, { authorization: setup.authorization });
    expect(served.body).toEqual({ data: { me: { id: 'usr_m' } } });
  });

  it('POST: answers the first unknown fragment alone, as graphql-js names it', async () => {
    const response = await post(
      setup.router.graphqlUrl,
      { query: expensive['997 spreads of fragments the document does not define']!.query },
      {
        authorization: setup.authorization,
      },
    );
    expect(response.status).toBe(400);
    expect(response.body).toEqual({ errors: [{ message: 'Unknown fragment "X0".', extensions: { code: 'GRAPHQL_VALIDATION_FAILED' } }] });
  });

  it('POST: refuses a document holding an operation past a limit even when the request names another one', async () => {
    const twoOperations = `query Wide { me { ${range(16)
      .map((i) => `a${i}: id`)
      .join(' ')} } } query Narrow { me { id } }`;
    const refused = await post(
      setup.router.graphqlUrl,
      { query: twoOperations, operationName: 'Narrow' },
      { authorization: setup.authorization },
    );
    expect(refused.status).toBe(400);
    expect(refused.body.errors?.[0]?.extensions).toEqual({ code: 'OPERATION_LIMIT_EXCEEDED', limit: 'aliases', max: 15, actual: 16 });
    // Within the limits, a document with several operations runs the one named.
    const fine = `query Wide { me { ${range(15)
      .map((i) => `a${i}: id`)
      .join(' ')} } } query Narrow { me { id } }`;
    const served = await post(setup.router.graphqlUrl, { query: fine, operationName: 'Narrow' }, { authorization: setup.authorization });
    expect(served.body).toEqual({ data: { me: { id: 'usr_m' } } });
  });

  it('WebSocket: refuses the subscribe with OPERATION_LIMIT_EXCEEDED before validating it', async () => {
    const client = wsClient(
      `${setup.router.url.replace(/^http/, 'ws')}/graphql`,
      await setup.issuer.bearer({ userId: 'usr_s', role: 'user', apiKeyId: 'key_pv_ws' }),
    );
    try {
      const subscription = `subscription ($id: ID!) { chargeUpdated(id: $id) { ${range(20)
        .map((i) => `a${i}: id`)
        .join(' ')} nope } }`;
      const error = await new Promise<unknown>((resolvePromise) => {
        client.subscribe(
          { query: subscription, variables: { id: 'ch_1' } },
          { next: () => resolvePromise('next'), error: resolvePromise, complete: () => resolvePromise('complete') },
        );
      });
      expect(error).toEqual([
        { message: 'Operation aliases 20 exceeds the limit of 15', extensions: { code: 'OPERATION_LIMIT_EXCEEDED' } },
      ]);
    } finally {
      await client.dispose();
    }
  });

  it('SSE: refuses the subscription with OPERATION_LIMIT_EXCEEDED before validating it', async () => {
    const response = await fetch(`${setup.router.url}/graphql/stream`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        accept: 'text/event-stream',
        authorization: await setup.issuer.bearer({ userId: 'usr_s', role: 'user', apiKeyId: 'key_pv_sse' }),
      },
      body: JSON.stringify({ query: `subscription { chargeUpdated(id: "ch_1") { ...X ...Y } }` }),
    });
    const text = await response.text();
    expect(text).toContain('Unknown fragment \\"X\\".');
    expect(text).toContain('GRAPHQL_VALIDATION_FAILED');
    expect(text).not.toContain('"Y');
  });
});
