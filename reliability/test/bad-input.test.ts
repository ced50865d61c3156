import { randomUUID } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import { freshDatabase, type TestDatabase } from '@ghostpay/test-support';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Cluster, createParty, type HttpResult, type Party, request, stackTracePattern, startCluster } from '../src/cluster.ts';
import { createTally, runScenario, type Tally } from '../src/results.ts';
import {
  createChargeMutation,
  createTestSigningKey,
  databaseFingerprint,
  issueCard,
  issueCardMutation,
  ledgerViolations,
} from '../src/suite-fixture.ts';

// Property runs are bounded by count and by time so the suite stays inside the CI budget.
const runs = { numRuns: 120, interruptAfterTimeLimit: 25_000 } as const;

let database: TestDatabase;
let cluster: Cluster;
let merchant: Party;
let owner: Party;
let cardId: string;

beforeAll(async () => {
  database = await freshDatabase({ poolSize: 2 });
  const key = await createTestSigningKey();
  cluster = await startCluster({
    databaseUrl: database.url,
    testJwk: key.publicJwk,
    services: ['auth', 'cards', 'charges', 'analytics', 'router', 'bridge'],
  });
  merchant = await createParty(database, cluster.graphqlUrl, 'merchant', 'fuzz-merchant');
  owner = await createParty(database, cluster.graphqlUrl, 'user', 'fuzz-owner');
  cardId = await issueCard(cluster.graphqlUrl, merchant, owner.userId, 5_000);
});

afterAll(async () => {
  await cluster?.close();
  await database?.close();
});

/** A refusal must be a client error with a clean body: never 5xx, never a stack frame. Counted in the tally. */
function isCleanRefusal(result: HttpResult, tally: Tally): boolean {
  tally.requests++;
  const clean = result.status < 500 && !stackTracePattern.test(result.text);
  if (!clean) tally.failures++;
  return clean;
}

/** {@link isCleanRefusal}, throwing when it is not: how a fast-check property fails. */
function expectCleanRefusal(result: HttpResult, tally: Tally) {
  if (isCleanRefusal(result, tally)) return;
  expect(result.status, result.text.slice(0, 500)).toBeLessThan(500);
  expect(result.text).not.toMatch(stackTracePattern);
}

function graphqlRaw(body: string | Uint8Array, headers: Record<string, string> = {}) {
  return request(cluster.graphqlUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${merchant.token}`, ...headers },
    body,
  });
}

function bridgeRaw(path: string, body: string | Uint8Array, headers: Record<string, string> = {}) {
  return request(`${cluster.bridgeUrl}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${merchant.token}`, ...headers },
    body,
  });
}

/** Values of every JSON type, plus the numeric edge cases money code gets wrong. */
const hostileScalar = fc.oneof(
  fc.constantFrom(0, -1, -0, 1.5, 2 ** 31, 2 ** 53 + 1, 1e308, -1e308, Number.MAX_SAFE_INTEGER, '100', '', null, true, [], {}),
  fc.integer({ min: -(2 ** 40), max: 0 }),
  fc.double({ noNaN: true }),
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 20 }),
  fc.constantFrom('XXX', 'usd', 'US', 'USDD', '€', '💳', '\u0000', "USD' OR 1=1--", '\ud800'),
);

async function fuzzScenario(
  id: string,
  title: string,
  property: (tally: Tally) => fc.IAsyncProperty<never> | fc.IAsyncProperty<unknown[]>,
) {
  const tally = createTally();
  const before = await databaseFingerprint(database.url);
  // Checked (not asserted) inside, recorded whatever happens, asserted last: a failing run
  // records its failures. A property that failed without a counted request (another of its
  // expectations) still counts as one failure.
  let details: fc.RunDetails<unknown[]> | undefined;
  let after: Record<string, string> | undefined;
  let violations: Awaited<ReturnType<typeof ledgerViolations>> = [];
  await runScenario(
    tally,
    () => ({
      id,
      title,
      faults: 0,
      failures: Math.max(tally.failures, details?.failed ? 1 : 0),
      invariantViolations: violations.length + (after && !isDeepStrictEqual(after, before) ? 1 : 0),
    }),
    async () => {
      details = await fc.check(property(tally) as fc.IAsyncProperty<unknown[]>, runs);
      after = await databaseFingerprint(database.url);
      violations = await ledgerViolations(database);
    },
  );
  if (details?.failed) throw new Error(fc.defaultReportMessage(details) ?? 'property failed');
  expect(after, 'a rejected request wrote to the database').toEqual(before);
  expect(violations).toEqual([]);
}

describe('bad input never produces a 500, a stack trace or a database write', () => {
  it('refuses arbitrary and mutated GraphQL documents cleanly', async () => {
    const fragments = [
      '{',
      '}',
      '(',
      ')',
      'mutation',
      'query',
      'createCharge',
      'card',
      '$x',
      ':',
      '...',
      '@skip',
      '"',
      '#',
      '\\u',
      'fragment F on Charge',
      ' ',
    ];
    await fuzzScenario('bad-input/graphql-documents', 'Arbitrary and mutated GraphQL documents', (tally) =>
      fc.asyncProperty(
        fc.oneof(
          fc.string({ maxLength: 300 }),
          fc.array(fc.constantFrom(...fragments), { maxLength: 60 }).map((parts) => parts.join('')),
          fc.string({ unit: 'grapheme', maxLength: 100 }).map((s) => `mutation { createCharge(input: {cardId: "${s}"}) { id } }`),
        ),
        async (query) => {
          const result = await graphqlRaw(JSON.stringify({ query }));
          expectCleanRefusal(result, tally);
          // A document that is not a valid charge or card mutation cannot have been executed as one.
          expect(result.json, result.text.slice(0, 300)).toBeTypeOf('object');
        },
      ),
    );
  });

  it('refuses hostile variables for createCharge and issueCard with BAD_USER_INPUT-class errors', async () => {
    await fuzzScenario('bad-input/graphql-variables', 'Wrong types, huge/negative/zero amounts, unknown currencies in variables', (tally) =>
      fc.asyncProperty(
        fc.record({
          amount: hostileScalar,
          currency: hostileScalar,
          cardId: fc.oneof(hostileScalar, fc.constant(cardId)),
          which: fc.boolean(),
        }),
        async ({ amount, currency, cardId: target, which }) => {
          // Keep only combinations that must be refused: the amount is never a positive integer in range.
          fc.pre(!(typeof amount === 'number' && Number.isInteger(amount) && amount > 0 && amount <= 2 ** 31 - 1));
          const result = which
            ? await graphqlRaw(
                JSON.stringify({
                  query: createChargeMutation,
                  variables: { input: { cardId: target, amount, currency }, key: `fuzz-${randomUUID()}` },
                }),
              )
            : await graphqlRaw(
                JSON.stringify({ query: issueCardMutation, variables: { input: { userId: owner.userId, amount, currency } } }),
              );
          expectCleanRefusal(result, tally);
          const body = result.json as { data?: Record<string, unknown> | null; errors?: unknown[] };
          expect(body.errors?.length ?? 0, result.text.slice(0, 300)).toBeGreaterThan(0);
          expect(body.data?.createCharge ?? body.data?.issueCard ?? null).toBeNull();
        },
      ),
    );
  });

  it('refuses malformed JSON, invalid UTF-8 and wrong content types on the router and the bridge', async () => {
    await fuzzScenario('bad-input/raw-bodies', 'Malformed JSON, invalid UTF-8 bytes, wrong content types (router and bridge)', (tally) =>
      fc.asyncProperty(
        fc.oneof(
          fc.uint8Array({ maxLength: 200 }),
          fc.string({ maxLength: 200 }),
          fc.constantFrom('{', '{"query": ', '[', 'null', '"x"', '{"query": 1}', '{"query": "{ me { id } }", "variables": "x"}'),
          fc.uint8Array({ minLength: 1, maxLength: 40 }).map((bytes) => {
            // A JSON body whose string holds an invalid UTF-8 sequence (lone continuation / truncated lead bytes).
            const prefix = Buffer.from('{"card_id": "');
            const suffix = Buffer.from('", "amount": 100, "currency": "USD"}');
            return new Uint8Array(Buffer.concat([prefix, Buffer.from(bytes.map((b) => 0x80 | (b & 0x3f))), Buffer.from([0xc3]), suffix]));
          }),
        ),
        fc.constantFrom('application/json', 'text/plain', 'application/x-www-form-urlencoded', 'application/json; charset=latin1'),
        fc.constantFrom('router', '/charges', '/cards', '/auth/token'),
        async (body, contentType, target) => {
          const headers = { 'content-type': contentType, 'idempotency-key': `fuzz-${randomUUID()}` };
          const result = target === 'router' ? await graphqlRaw(body, headers) : await bridgeRaw(target, body, headers);
          expectCleanRefusal(result, tally);
          expect(result.status).toBeGreaterThanOrEqual(400);
        },
      ),
    );
  });

  it('refuses hostile REST bodies for charges, cards and refunds with 4xx and the error envelope', async () => {
    await fuzzScenario('bad-input/rest-bodies', 'Hostile REST bodies (POST /charges, /cards, /charges/{id}/refunds)', (tally) =>
      fc.asyncProperty(
        fc.record({
          amount: hostileScalar,
          currency: hostileScalar,
          extra: fc.dictionary(fc.string({ maxLength: 8 }), hostileScalar, { maxKeys: 3 }),
        }),
        fc.constantFrom('/charges', '/cards', '/charges/ch_doesnotexist/refunds'),
        async ({ amount, currency, extra }, path) => {
          fc.pre(!(typeof amount === 'number' && Number.isInteger(amount) && amount > 0 && amount <= 2 ** 31 - 1));
          const payload =
            path === '/cards' ? { user_id: owner.userId, amount, currency, ...extra } : { card_id: cardId, amount, currency, ...extra };
          const result = await bridgeRaw(path, JSON.stringify(payload), { 'idempotency-key': `fuzz-${randomUUID()}` });
          expectCleanRefusal(result, tally);
          expect(result.status).toBeGreaterThanOrEqual(400);
          expect((result.json as { error?: { code?: string } } | undefined)?.error?.code, result.text.slice(0, 300)).toBeTypeOf('string');
        },
      ),
    );
  });

  it('refuses oversized bodies, deep nesting, alias bombs and batch bombs before any work', async () => {
    const tally = createTally();
    const before = await databaseFingerprint(database.url);
    const deep = (n: number) => `query { ${'me { cards { edges { node { '.repeat(n)}id${' } } } }'.repeat(n)} }`;
    const aliases = (n: number) => `query { ${Array.from({ length: n }, (_, i) => `a${i}: me { id }`).join(' ')} }`;
    const chargeAliases = (n: number) =>
      `mutation { ${Array.from({ length: n }, (_, i) => `c${i}: createCharge(input: {cardId: "${cardId}", amount: 100, currency: "USD"}, idempotencyKey: "bomb-${i}") { id }`).join(' ')} }`;
    // `answers`: the request is harmless and may be served (extra variables are ignored), but it must stay clean.
    const cases: { name: string; send: () => Promise<HttpResult>; answers?: boolean }[] = [
      {
        name: 'oversized router body',
        send: () => graphqlRaw(JSON.stringify({ query: `{ me { id } }`, pad: 'x'.repeat(2 * 1024 * 1024) })),
      },
      {
        name: 'oversized bridge body',
        send: () =>
          bridgeRaw('/charges', JSON.stringify({ card_id: cardId, amount: 1, currency: 'USD', description: 'x'.repeat(1024 * 1024) })),
      },
      { name: 'deep nesting', send: () => graphqlRaw(JSON.stringify({ query: deep(40) })) },
      {
        name: 'deeply nested JSON variables',
        send: () => graphqlRaw(`{"query": "{ me { id } }", "variables": {"a": ${'['.repeat(5_000)}${']'.repeat(5_000)}}}`),
        answers: true,
      },
      { name: 'alias bomb', send: () => graphqlRaw(JSON.stringify({ query: aliases(500) })) },
      { name: 'alias bomb of charges', send: () => graphqlRaw(JSON.stringify({ query: chargeAliases(50) })) },
      {
        name: 'batch bomb',
        send: () =>
          graphqlRaw(
            JSON.stringify(
              Array.from({ length: 500 }, () => ({
                query: createChargeMutation,
                variables: { input: { cardId, amount: 100, currency: 'USD' }, key: 'batch' },
              })),
            ),
          ),
      },
      {
        name: 'fragment cycle',
        send: () => graphqlRaw(JSON.stringify({ query: 'query { me { ...A } } fragment A on User { ...B } fragment B on User { ...A }' })),
      },
      { name: 'huge token count', send: () => graphqlRaw(JSON.stringify({ query: `{ me { ${'id '.repeat(20_000)} } }` })) },
    ];
    const problems: string[] = [];
    let after: Record<string, string> | undefined;
    let violations: Awaited<ReturnType<typeof ledgerViolations>> = [];
    await runScenario(
      tally,
      () => ({
        id: 'bad-input/bombs',
        title: 'Oversized bodies, deep nesting, alias, batch, fragment-cycle and token bombs',
        faults: 0,
        failures: problems.length,
        invariantViolations: violations.length + (after && !isDeepStrictEqual(after, before) ? 1 : 0),
      }),
      async () => {
        for (const { name, send, answers } of cases) {
          const result = await send();
          const clean = isCleanRefusal(result, tally);
          // A bomb that was served instead of refused fails the scenario too.
          if (!clean || (!answers && result.status < 400)) problems.push(`${name}: ${result.status} ${result.text.slice(0, 300)}`);
        }
        after = await databaseFingerprint(database.url);
        violations = await ledgerViolations(database);
      },
    );
    expect(problems).toEqual([]);
    expect(after).toEqual(before);
    expect(violations).toEqual([]);
  });

  it('keeps every service log free of stack traces after the fuzzing', () => {
    // An unhandled error would be logged with its stack; clients never see it, operators would.
    const traces = cluster.allLogs().filter((line) => /"stack":/.test(line) && !/"level":(40|30)/.test(line));
    expect(traces.slice(0, 3)).toEqual([]);
  });
});
