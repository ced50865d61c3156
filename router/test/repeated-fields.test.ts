import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { getIntrospectionQuery, parse, specifiedRules, validate } from 'graphql';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultOperationLimits } from '../src/operation-limits.ts';
import { measureRepeatedFields, repeatedFieldsRule } from '../src/overlap-limits.ts';
import { sha256Hex } from '../src/persisted-queries.ts';
import { apiSchemaFromSupergraph } from '../src/subscriptions/api-schema.ts';
import {
  codes,
  composeRepoSupergraph,
  countingOverlapRules,
  post,
  repoRoot,
  type StartedRouter,
  startRouter,
  withRouter,
} from './router-harness.ts';
import { idleSubscriptions, wsClient } from './subscriptions-harness.ts';

/**
 * graphql-js's OverlappingFieldsCanBeMergedRule compares every pair of fields sharing a response
 * key, their sub-selections pair by pair: documents within the 2000-token cap cost it 50–235 ms
 * of CPU, before any operation limit was compared. The router refuses them first, with
 * OPERATION_LIMIT_EXCEEDED (`limit: 'repeatedFields'`). Measured by counting (which rules ran,
 * what the shape measures), never by the clock.
 */

const times = (n: number, text: string) => Array.from({ length: n }, () => text).join(' ');

/** The auditor's documents: each within the 2000-token cap. */
const expensive: Record<string, { query: string; repeats: number }> = {
  '495 copies of me { id }': { query: `{ ${times(495, 'me { id }')} }`, repeats: 495 },
  '180 copies of apiKeys { id } in one me': { query: `{ me { ${times(180, 'apiKeys { id }')} } }`, repeats: 180 },
  '120 copies of me { apiKeys { id } }': { query: `{ ${times(120, 'me { apiKeys { id } }')} }`, repeats: 120 },
  '300 copies of me { ...U }': { query: `{ ${times(300, 'me { ...U }')} } fragment U on User { id apiKeys { id } }`, repeats: 300 },
  '150 fragments, each me { id }, spread together': {
    query: `{ ${Array.from({ length: 150 }, (_, i) => `...F${i}`).join(' ')} } ${Array.from({ length: 150 }, (_, i) => `fragment F${i} on Query { me { id } }`).join(' ')}`,
    repeats: 150,
  },
  '5 × 5 nested repeats (me, then apiKeys)': { query: `{ ${times(5, `me { ${times(5, 'apiKeys { id }')} }`)} }`, repeats: 25 },
};

const supergraphSdl = composeRepoSupergraph();
const schema = apiSchemaFromSupergraph(supergraphSdl);

/** Every operation body of the bridge's manifest (persisted queries it sends through the router). */
const manifestBodies = (
  JSON.parse(readFileSync(resolve(repoRoot, 'openapi-bridge/persisted-queries.json'), 'utf8')) as { operations: { body: string }[] }
).operations.map((o) => o.body);

describe('measuring repeated fields', () => {
  for (const [what, { query, repeats }] of Object.entries(expensive)) {
    it(`counts ${what} as ${repeats}`, () => {
      // The document the router receives: within its token cap.
      expect(measureRepeatedFields(parse(query, { maxTokens: 2000 }))).toBe(repeats);
    });
  }

  it('counts through inline fragments, and a fragment spread twice in one selection set once (graphql-js compares it once)', () => {
    expect(measureRepeatedFields(parse('{ me { id } ... on Query { me { id } ... on Query { me { id } } } }'))).toBe(3);
    expect(measureRepeatedFields(parse('{ ...F ...F ...F } fragment F on Query { me { id } me { id } }'))).toBe(2);
    expect(measureRepeatedFields(parse('{ me { a: id a: id } me { a: id } }'))).toBe(4);
    // Aliases make distinct response keys: nothing for the overlap check to compare.
    expect(measureRepeatedFields(parse(`{ ${Array.from({ length: 100 }, (_, i) => `m${i}: me { id }`).join(' ')} }`))).toBe(1);
  });

  it('measures each fragment once: linear even when fragments double at every level', () => {
    // Walking spread by spread would visit 2^200 fragments; each level doubles the repeats below.
    let query = '{ me { ...F0 } }\n';
    for (let i = 0; i < 200; i++) query += `fragment F${i} on User { apiKeys { ...F${i + 1} } apiKeys { ...F${i + 1} } }\n`;
    query += 'fragment F200 on User { id }';
    // F200 is on User and spread in ApiKey: validation refuses that, measuring does not care.
    expect(measureRepeatedFields(parse(query))).toBe(2 ** 200);
  });

  it('leaves every operation in the repo far below the default limit of 20', () => {
    const corpus = [
      ...manifestBodies,
      getIntrospectionQuery({ descriptions: true, specifiedByUrl: true, directiveIsRepeatable: true, inputValueDeprecation: true }),
      readFileSync(resolve(repoRoot, 'bench/src/federation/test-query.ts'), 'utf8').match(/`([^`]*)`/)?.[1] ?? '',
      'subscription Watch($id: ID!) { chargeUpdated(id: $id) { id status amount refundedAmount card { id status last4 owner { id name } } } }',
      '{ items { id ... on Book { reviews { author { name } } } ... on Movie { reviews { author { name } } } } }',
    ].filter((q) => q.trim() !== '');
    expect(corpus.length).toBeGreaterThan(10);
    for (const query of corpus) expect(measureRepeatedFields(parse(query)), query).toBeLessThanOrEqual(2);
    expect(defaultOperationLimits.maxRepeatedFields).toBe(20);
  });
});

describe('the pre-validation rule, in the order Apollo Server runs it (after specifiedRules, one traversal)', () => {
  const rule = repeatedFieldsRule(20);

  for (const [what, { query }] of Object.entries(expensive)) {
    it(`refuses ${what} before OverlappingFieldsCanBeMergedRule checks a single selection set`, () => {
      const { counter, rules } = countingOverlapRules();
      const errors = validate(schema, parse(query), [...rules, rule]);
      expect(errors.map((e) => e.extensions)).toEqual([
        expect.objectContaining({ code: 'OPERATION_LIMIT_EXCEEDED', limit: 'repeatedFields', max: 20 }),
      ]);
      expect(counter.selectionSets).toBe(0);
      // Without the rule the same document costs graphql-js its overlap check on every selection set.
      const without = countingOverlapRules();
      validate(schema, parse(query), without.rules);
      expect(without.counter.selectionSets).toBeGreaterThan(0);
    });
  }

  it('lets the manifest operations through to full validation, which they pass', () => {
    for (const body of manifestBodies) {
      const { counter, rules } = countingOverlapRules();
      expect(validate(schema, parse(body), [...rules, rule]), body).toEqual([]);
      expect(counter.selectionSets).toBeGreaterThan(0);
    }
  });

  it('leaves other validation errors to validation when the shape is within the limit', () => {
    const errors = validate(schema, parse('{ me { id } me { id: email } }'), [...specifiedRules, rule]);
    expect(errors.map((e) => e.message)).toEqual([expect.stringMatching(/^Fields "me" conflict because subfields "id" conflict/)]);
  });
});

describe('the router refuses them before validation, on every path that validates a client document', () => {
  const setup = withRouter({
    supergraphSdl,
    // The definitions limit lifted: '150 fragments … spread together' holds 151 definitions, and is refused here for its repeats.
    env: { ROUTER_RATE_LIMIT_PER_MINUTE: '1000', ROUTER_MAX_BATCH_SIZE: '5', ROUTER_MAX_DEFINITIONS: '1000' },
    subscriptions: idleSubscriptions,
    bearer: { userId: 'usr_m', role: 'merchant', apiKeyId: 'key_repeats' },
  });
  /** A second router on the same subgraphs whose repeated-fields limit is 2. */
  let strict: StartedRouter;
  beforeAll(async () => {
    strict = await startRouter({
      verifier: setup.issuer.verifier,
      urls: setup.subgraphs.urls,
      supergraphSdl,
      env: { ROUTER_RATE_LIMIT_PER_MINUTE: '1000', ROUTER_MAX_REPEATED_FIELDS: '2' },
    });
  });
  afterAll(async () => {
    await strict?.close();
  });
  const hits = () => Object.values(setup.subgraphs.hits).reduce((a, b) => a + b, 0);
  /** A valid document past the limit, plus an unknown field and a field conflict: validation would report both. */
  const refusedBeforeValidation = `{ ${times(25, 'me { id }')} me { id: email } nope }`;

  const refusal = (actual: number, max = 20) => ({
    message: expect.stringMatching(new RegExp(`repeats one response key ${actual} times.*limit of ${max}$`)),
    extensions: { code: 'OPERATION_LIMIT_EXCEEDED', limit: 'repeatedFields', max, actual },
  });

  for (const [what, { query, repeats }] of Object.entries(expensive)) {
    it(`POST: refuses ${what} with 400 OPERATION_LIMIT_EXCEEDED`, async () => {
      const before = hits();
      const response = await post(setup.router.graphqlUrl, { query }, { authorization: setup.authorization });
      expect(response.status).toBe(400);
      expect(response.body).toEqual({ errors: [refusal(repeats)] });
      expect(hits()).toBe(before);
    });
  }

  it('POST: refuses before validation runs (no validation error for the unknown field or the conflict), for anonymous callers too', async () => {
    for (const headers of [{ authorization: setup.authorization }, {}] as Record<string, string>[]) {
      const response = await post(setup.router.graphqlUrl, { query: refusedBeforeValidation }, headers);
      expect(response.status).toBe(400);
      expect(response.body).toEqual({ errors: [refusal(26)] });
    }
  });

  it('GET: refuses the same way', async () => {
    const response = await fetch(`${setup.router.graphqlUrl}?query=${encodeURIComponent(expensive['495 copies of me { id }']!.query)}`, {
      headers: { authorization: setup.authorization, 'apollo-require-preflight': 'true' },
    });
    expect(response.status).toBe(400);
    expect(await response.json()).toEqual({ errors: [refusal(495)] });
  });

  it('batches: refuses the entry past the limit, runs the others', async () => {
    const response = await post(
      setup.router.graphqlUrl,
      [{ query: '{ card(id: "1") { id } card(id: "1") { id } }' }, { query: refusedBeforeValidation }],
      { authorization: setup.authorization },
    );
    expect(response.body).toEqual([{ data: { card: { id: '1' } } }, { errors: [refusal(26)] }]);
  });

  it('APQ: refuses a registration past the limit, which stays unregistered', async () => {
    const query = expensive['120 copies of me { apiKeys { id } }']!.query;
    const extensions = { persistedQuery: { version: 1, sha256Hash: sha256Hex(query) } };
    const register = await post(setup.router.graphqlUrl, { query, extensions }, { authorization: setup.authorization });
    expect(register.status).toBe(400);
    expect(register.body).toEqual({ errors: [refusal(120)] });
    expect(codes(await post(setup.router.graphqlUrl, { extensions }, { authorization: setup.authorization }))).toEqual([
      'PERSISTED_QUERY_NOT_FOUND',
    ]);
  });

  it('still serves operations that repeat a field a few times', async () => {
    const response = await post(
      setup.router.graphqlUrl,
      { query: `{ card(id: "1") { ${times(20, 'id')} } }` },
      { authorization: setup.authorization },
    );
    expect(response.body).toEqual({ data: { card: { id: '1' } } });
  });

  it('reads its limit from ROUTER_MAX_REPEATED_FIELDS', async () => {
    const twice = await post(strict.graphqlUrl, { query: '{ card(id: "1") { id id } }' }, { authorization: setup.authorization });
    expect(twice.body).toEqual({ data: { card: { id: '1' } } });
    const thrice = await post(strict.graphqlUrl, { query: '{ card(id: "1") { id id id } }' }, { authorization: setup.authorization });
    expect(thrice.status).toBe(400);
    expect(thrice.body).toEqual({ errors: [refusal(3, 2)] });
  });

  describe('subscriptions', () => {
    const bearer = () => setup.issuer.bearer({ userId: 'usr_sub', role: 'user', apiKeyId: 'key_repeats_sub' });
    /** Past the limit, with an unknown field: validation (GRAPHQL_VALIDATION_FAILED) would report that. */
    const subscription = `subscription ($id: ID!) { chargeUpdated(id: $id) { ${times(25, 'card { id }')} nope } }`;

    it('WebSocket: refuses the subscribe with OPERATION_LIMIT_EXCEEDED before validating it', async () => {
      const client = wsClient(`${setup.router.url.replace(/^http/, 'ws')}/graphql`, await bearer());
      try {
        const error = await new Promise<unknown>((resolvePromise) => {
          client.subscribe(
            { query: subscription, variables: { id: 'ch_1' } },
            { next: () => resolvePromise('next'), error: resolvePromise, complete: () => resolvePromise('complete') },
          );
        });
        // graphql-ws refusals carry the code only (as every WebSocket refusal of the router does).
        const { message, extensions } = refusal(25);
        expect(error).toEqual([{ message, extensions: { code: extensions.code } }]);
      } finally {
        await client.dispose();
      }
    });

    it('SSE: refuses the subscription with OPERATION_LIMIT_EXCEEDED before validating it', async () => {
      const response = await fetch(`${setup.router.url}/graphql/stream`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'text/event-stream', authorization: await bearer() },
        body: JSON.stringify({ query: subscription, variables: { id: 'ch_1' } }),
      });
      const text = await response.text();
      const data = /^data: (.*)$/m.exec(text)?.[1];
      expect(data && JSON.parse(data)).toEqual({ data: null, errors: [expect.objectContaining(refusal(25))] });
    });
  });
});
