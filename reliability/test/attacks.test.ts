import { readdirSync, readFileSync, statSync } from 'node:fs';
import { createServer as createTcpServer, type Server as TcpServer } from 'node:net';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { freshDatabase, type TestDatabase } from '@ghostpay/test-support';
import { exportJWK, exportSPKI, generateKeyPair, SignJWT } from 'jose';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type Cluster,
  createParty,
  dataOf,
  errorCodes,
  graphql,
  type HttpResult,
  type Party,
  request,
  stackTracePattern,
  startCluster,
} from '../src/cluster.ts';
import { createTally, runScenario, type Tally } from '../src/results.ts';
import {
  charge,
  createTestSigningKey,
  databaseFingerprint,
  issueCard,
  ledgerViolations,
  metricValue,
  type TestSigningKey,
  waitForSettlement,
} from '../src/suite-fixture.ts';

type Violations = Awaited<ReturnType<typeof ledgerViolations>>;

const allowedOrigin = 'https://app.reliability.test';

let database: TestDatabase;
let cluster: Cluster;
let key: TestSigningKey;
let admin: Party;
let merchantA: Party;
let merchantB: Party;
let userA: Party;
let userB: Party;
let cardA: string;
let cardB: string;
/** Issued by merchant A to user A and never charged: revealable. */
let activeCardA: string;
let chargeA: string;
let chargeB: string;
/** Every response body the suite saw, scanned for PANs at the end. */
const seenBodies: string[] = [];

beforeAll(async () => {
  database = await freshDatabase({ poolSize: 2 });
  key = await createTestSigningKey();
  cluster = await startCluster({
    databaseUrl: database.url,
    testJwk: key.publicJwk,
    // Debug logging: the PAN scan should cover everything a service can print.
    env: { BRIDGE_CORS_ORIGINS: allowedOrigin, LOG_LEVEL: 'debug' },
  });
  [admin, merchantA, merchantB, userA, userB] = await Promise.all([
    createParty(database, cluster.graphqlUrl, 'admin', 'admin'),
    createParty(database, cluster.graphqlUrl, 'merchant', 'merchant-a'),
    createParty(database, cluster.graphqlUrl, 'merchant', 'merchant-b'),
    createParty(database, cluster.graphqlUrl, 'user', 'user-a'),
    createParty(database, cluster.graphqlUrl, 'user', 'user-b'),
  ]);
  cardA = await issueCard(cluster.graphqlUrl, merchantA, userA.userId);
  cardB = await issueCard(cluster.graphqlUrl, merchantB, userB.userId);
  activeCardA = await issueCard(cluster.graphqlUrl, merchantA, userA.userId);
  const a = await charge(cluster.graphqlUrl, merchantA, cardA, 'attack-a');
  const b = await charge(cluster.graphqlUrl, merchantB, cardB, 'attack-b');
  if (!a.id || !b.id) throw new Error(`setup charges failed: ${JSON.stringify([a, b])}`);
  chargeA = a.id;
  chargeB = b.id;
});

afterAll(async () => {
  await cluster?.close();
  await database?.close();
});

const gql = async (query: string, variables: Record<string, unknown> | undefined, token: string | undefined) => {
  const result = await graphql(cluster.graphqlUrl, query, variables, token);
  seenBodies.push(result.text);
  return result;
};

const rest = async (method: string, path: string, token: string | undefined, body?: unknown, headers: Record<string, string> = {}) => {
  const result = await request(`${cluster.bridgeUrl}${path}`, {
    method,
    headers: {
      ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...headers,
    },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  seenBodies.push(result.text);
  return result;
};

function b64url(value: unknown) {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

describe('the JWT matrix against the router and the bridge', () => {
  let listener: TcpServer;
  let outboundConnections = 0;
  let listenerUrl = '';

  beforeAll(async () => {
    // Anything the services fetch from a token header (jku, x5u) would connect here.
    listener = createTcpServer((socket) => {
      outboundConnections++;
      socket.destroy();
    });
    await new Promise<void>((done) => listener.listen(0, '127.0.0.1', done));
    const address = listener.address();
    if (!address || typeof address === 'string') throw new Error('no address');
    listenerUrl = `http://127.0.0.1:${address.port}`;
  });
  afterAll(() => new Promise<void>((done) => listener.close(() => done())));

  // The probe is `card(id)`: served by the cards subgraph, which trusts the JWKS (the auth
  // subgraph trusts only its own key ring, so the suite's key cannot be used against `me`).
  const probe = 'query ($id: ID!) { card(id: $id) { id } }';

  it('accepts the control tokens: the auth service token and the suite key with good claims', async () => {
    const me = await gql('{ me { id } }', undefined, merchantA.token);
    expect(dataOf<{ me: { id: string } }>(me)?.me.id, me.text).toBe(merchantA.userId);
    for (const token of [merchantA.token, await key.sign(merchantA)]) {
      const graph = await gql(probe, { id: cardA }, token);
      expect(dataOf<{ card: { id: string } }>(graph)?.card.id, graph.text).toBe(cardA);
      const restResult = await rest('GET', `/cards/${cardA}`, token);
      expect(restResult.status, restResult.text).toBe(200);
    }
  });

  it('refuses every forged, confused, expired, misdirected and tampered token on both entry points', async () => {
    const tally = createTally();
    const now = Math.floor(Date.now() / 1000);
    const attacker = await generateKeyPair('RS256', { extractable: true });
    const attackerJwk = { ...(await exportJWK(attacker.publicKey)), kid: 'attacker', alg: 'RS256' };
    const signAttacker = (header: Record<string, unknown>) =>
      new SignJWT({
        iss: 'ghostpay-auth',
        aud: 'ghostpay-api',
        sub: merchantA.userId,
        role: 'admin',
        scope: 'admin',
        key_id: merchantA.apiKeyId,
        iat: now,
        exp: now + 600,
      })
        .setProtectedHeader({ alg: 'RS256', ...header })
        .sign(attacker.privateKey);
    const publicPem = await exportSPKI(key.publicKey);
    const hsConfused = await new SignJWT({
      iss: 'ghostpay-auth',
      aud: 'ghostpay-api',
      sub: merchantA.userId,
      role: 'admin',
      scope: 'admin',
      iat: now,
      exp: now + 600,
    })
      .setProtectedHeader({ alg: 'HS256', kid: key.kid })
      .sign(new TextEncoder().encode(publicPem));
    const [realHeader, realPayload, realSignature] = merchantA.token.split('.') as [string, string, string];
    const elevated = {
      ...JSON.parse(Buffer.from(realPayload, 'base64url').toString()),
      role: 'admin',
      scope: 'admin users:read users:write',
    };
    const flipped = `${realSignature.slice(0, -4)}${realSignature.slice(-4) === 'AAAA' ? 'BBBB' : 'AAAA'}`;

    const matrix: Record<string, string> = {
      'alg none': `${b64url({ alg: 'none', kid: key.kid, typ: 'JWT' })}.${b64url({ ...elevated })}.`,
      'alg none, upper case': `${b64url({ alg: 'NONE', kid: key.kid })}.${b64url({ ...elevated })}.`,
      'HS256 keyed with the RSA public key (alg confusion)': hsConfused,
      'unknown kid': await signAttacker({ kid: 'no-such-key' }),
      'kid path traversal': await signAttacker({ kid: '../../../../etc/passwd' }),
      'kid SQL injection': await signAttacker({ kid: "x' UNION SELECT 'secret' --" }),
      'kid pointing at a URL': await signAttacker({ kid: `${listenerUrl}/key` }),
      'jku to an attacker JWKS': await signAttacker({ kid: 'attacker', jku: `${listenerUrl}/jwks.json` }),
      'x5u to an attacker certificate': await signAttacker({ kid: 'attacker', x5u: `${listenerUrl}/cert.pem` }),
      'embedded jwk': await signAttacker({ jwk: attackerJwk }),
      'embedded jwk with a trusted kid': await signAttacker({ kid: key.kid, jwk: attackerJwk }),
      'trusted kid, attacker signature': await signAttacker({ kid: key.kid }),
      expired: await key.sign(merchantA, { iat: now - 7200, exp: now - 3600 }),
      'not yet valid (nbf in the future)': await key.sign(merchantA, { nbf: now + 3600 }),
      'wrong issuer': await key.sign(merchantA, { iss: 'https://evil.example' }),
      'wrong audience': await key.sign(merchantA, { aud: 'another-api' }),
      'no expiry': await key.sign(merchantA, { exp: undefined }),
      'payload tampered to admin': `${realHeader}.${b64url(elevated)}.${realSignature}`,
      'signature tampered': `${realHeader}.${realPayload}.${flipped}`,
      'not a JWT': 'definitely-not-a-jwt',
      'empty segments': '..',
    };

    // Counted first, recorded whatever happens, asserted last: a failing run records its failures.
    const refusals: { name: string; graphql: boolean; rest: boolean; answers: string }[] = [];
    let violations: Violations = [];
    await runScenario(
      tally,
      () => ({
        id: 'attacks/jwt-matrix',
        title: `JWT matrix (${Object.keys(matrix).length} forged/invalid tokens × router and bridge; jku/x5u listener connections: ${outboundConnections})`,
        faults: Object.keys(matrix).length,
        // A connection to the attacker's listener is a fetched jku/x5u/kid URL: a failure too.
        failures: tally.failures + outboundConnections,
        invariantViolations: violations.length,
      }),
      async () => {
        for (const [name, token] of Object.entries(matrix)) {
          const graph = await gql(probe, { id: cardA }, token);
          tally.requests++;
          const card = dataOf<{ card?: { id: string } | null }>(graph)?.card;
          const graphOk =
            !card && graph.status < 500 && errorCodes(graph).includes('UNAUTHENTICATED') && !stackTracePattern.test(graph.text);
          const restResult = await rest('GET', `/cards/${cardA}`, token);
          tally.requests++;
          const restOk = restResult.status === 401 && !stackTracePattern.test(restResult.text);
          if (!graphOk) tally.failures++;
          if (!restOk) tally.failures++;
          refusals.push({
            name,
            graphql: graphOk,
            rest: restOk,
            answers: `${graph.status} ${graph.text.slice(0, 200)} | ${restResult.status} ${restResult.text.slice(0, 200)}`,
          });
        }
        // jku / x5u / kid URLs must never be fetched: nothing connected to the listener.
        await new Promise((done) => setTimeout(done, 500));
        violations = await ledgerViolations(database);
      },
    );
    expect(refusals.filter((r) => !r.graphql || !r.rest)).toEqual([]);
    expect(refusals).toHaveLength(Object.keys(matrix).length);
    expect(outboundConnections).toBe(0);
    expect(violations).toEqual([]);
  });
});

describe('a token the router accepts but a subgraph refuses', () => {
  // The auth subgraph trusts only its own key ring, not the JWKS the others use: a token signed
  // by the suite's key is what a router/subgraph key mismatch (say, mid-rotation) looks like.
  it('is UNAUTHENTICATED for the caller and never counts as the subgraph failing (the breaker stays closed)', async () => {
    const token = await key.sign(merchantA);
    for (let i = 0; i < 8; i++) {
      const result = await gql('{ me { id } }', undefined, token);
      expect(result.status, result.text).toBeLessThan(500);
      expect(errorCodes(result), result.text).toEqual(['UNAUTHENTICATED']);
    }
    expect(await metricValue(cluster.services.router.url, 'circuit_breaker_state', { subgraph: 'auth' })).toBe(0);
    const me = await gql('{ me { id } }', undefined, merchantA.token);
    expect(dataOf<{ me: { id: string } }>(me)?.me.id, me.text).toBe(merchantA.userId);
  });
});

describe('the RBAC matrix through GraphQL and REST', () => {
  type Expect = 'allow' | 'deny';
  interface Case {
    name: string;
    who: () => Party;
    expect: Expect;
    graphql?: () => Promise<HttpResult>;
    rest?: () => Promise<HttpResult>;
    /** The field holding the result in `data`. */
    field?: string;
  }

  const cardQuery = 'query ($id: ID!) { card(id: $id) { id status } }';
  const chargeQuery = 'query ($id: ID!) { charge(id: $id) { id status } }';
  const revealMutation = 'mutation ($id: ID!) { revealCard(id: $id) { pan cvc } }';
  const cancelMutation = 'mutation ($id: ID!) { cancelCard(id: $id) { id status } }';
  const refundMutation = 'mutation ($id: ID!, $k: String!) { refundCharge(id: $id, idempotencyKey: $k) { id status } }';
  const chargeMutation =
    'mutation ($input: CreateChargeInput!, $k: String!) { createCharge(input: $input, idempotencyKey: $k) { id status } }';
  const issueMutation = 'mutation ($input: IssueCardInput!) { issueCard(input: $input) { id } }';

  function readCases(): Case[] {
    const parties: [string, () => Party][] = [
      ['admin', () => admin],
      ['issuing merchant', () => merchantA],
      ['other merchant', () => merchantB],
      ['card owner', () => userA],
      ['other user', () => userB],
    ];
    const readable = new Set(['admin', 'issuing merchant', 'card owner']);
    const cases: Case[] = [];
    for (const [label, who] of parties) {
      const verdict: Expect = readable.has(label) ? 'allow' : 'deny';
      cases.push(
        {
          name: `${label} reads card A by id`,
          who,
          expect: verdict,
          field: 'card',
          graphql: () => gql(cardQuery, { id: cardA }, who().token),
          rest: () => rest('GET', `/cards/${cardA}`, who().token),
        },
        {
          name: `${label} reads charge A by id`,
          who,
          expect: verdict,
          field: 'charge',
          graphql: () => gql(chargeQuery, { id: chargeA }, who().token),
          rest: () => rest('GET', `/charges/${chargeA}`, who().token),
        },
      );
      const mayReveal = label === 'admin' || label === 'card owner';
      cases.push({
        name: `${label} reveals card A`,
        who,
        expect: mayReveal ? 'allow' : 'deny',
        field: 'revealCard',
        graphql: () => gql(revealMutation, { id: activeCardA }, who().token),
        rest: () => rest('POST', `/cards/${activeCardA}/reveal`, who().token),
      });
    }
    return cases;
  }

  function writeDenials(): Case[] {
    return [
      {
        name: 'other merchant cancels card A',
        who: () => merchantB,
        expect: 'deny',
        field: 'cancelCard',
        graphql: () => gql(cancelMutation, { id: cardA }, merchantB.token),
        rest: () => rest('POST', `/cards/${cardA}/cancel`, merchantB.token),
      },
      {
        name: 'other user cancels card A',
        who: () => userB,
        expect: 'deny',
        field: 'cancelCard',
        graphql: () => gql(cancelMutation, { id: cardA }, userB.token),
        rest: () => rest('POST', `/cards/${cardA}/cancel`, userB.token),
      },
      {
        name: 'merchant A charges card B (another merchant’s card)',
        who: () => merchantA,
        expect: 'deny',
        field: 'createCharge',
        graphql: () => gql(chargeMutation, { input: { cardId: cardB, amount: 100, currency: 'USD' }, k: 'rbac-1' }, merchantA.token),
        rest: () =>
          rest('POST', '/charges', merchantA.token, { card_id: cardB, amount: 100, currency: 'USD' }, { 'idempotency-key': 'rbac-2' }),
      },
      {
        name: 'a user creates a charge',
        who: () => userA,
        expect: 'deny',
        field: 'createCharge',
        graphql: () => gql(chargeMutation, { input: { cardId: cardA, amount: 100, currency: 'USD' }, k: 'rbac-3' }, userA.token),
        rest: () =>
          rest('POST', '/charges', userA.token, { card_id: cardA, amount: 100, currency: 'USD' }, { 'idempotency-key': 'rbac-4' }),
      },
      {
        name: 'merchant A refunds charge B',
        who: () => merchantA,
        expect: 'deny',
        field: 'refundCharge',
        graphql: () => gql(refundMutation, { id: chargeB, k: 'rbac-5' }, merchantA.token),
        rest: () => rest('POST', `/charges/${chargeB}/refunds`, merchantA.token, {}, { 'idempotency-key': 'rbac-6' }),
      },
      {
        name: 'card owner refunds charge A',
        who: () => userA,
        expect: 'deny',
        field: 'refundCharge',
        graphql: () => gql(refundMutation, { id: chargeA, k: 'rbac-7' }, userA.token),
        rest: () => rest('POST', `/charges/${chargeA}/refunds`, userA.token, {}, { 'idempotency-key': 'rbac-8' }),
      },
      {
        name: 'a user issues a card',
        who: () => userA,
        expect: 'deny',
        field: 'issueCard',
        graphql: () => gql(issueMutation, { input: { userId: userA.userId, amount: 100, currency: 'USD' } }, userA.token),
        rest: () => rest('POST', '/cards', userA.token, { user_id: userA.userId, amount: 100, currency: 'USD' }),
      },
      {
        name: 'a merchant lists all users',
        who: () => merchantA,
        expect: 'deny',
        field: 'users',
        graphql: () => gql('{ users { edges { node { id } } } }', undefined, merchantA.token),
      },
      {
        name: 'a merchant rotates the signing key',
        who: () => merchantA,
        expect: 'deny',
        field: 'rotateSigningKey',
        graphql: () => gql('mutation { rotateSigningKey { kid } }', undefined, merchantA.token),
      },
      {
        name: 'a user rotates the signing key',
        who: () => userA,
        expect: 'deny',
        field: 'rotateSigningKey',
        graphql: () => gql('mutation { rotateSigningKey { kid } }', undefined, userA.token),
      },
      {
        name: 'a merchant creates a user',
        who: () => merchantA,
        expect: 'deny',
        field: 'createUser',
        graphql: () =>
          gql(
            'mutation { createUser(input: {name: "x", email: "x@example.com", role: ADMIN}) { user { id } } }',
            undefined,
            merchantA.token,
          ),
      },
      {
        name: 'a merchant creates an API key for another user',
        who: () => merchantA,
        expect: 'deny',
        field: 'createApiKey',
        graphql: () => gql('mutation ($u: ID!) { createApiKey(userId: $u) { apiKey { id } } }', { u: userB.userId }, merchantA.token),
      },
      {
        name: 'an anonymous caller reads card A',
        who: () => userA,
        expect: 'deny',
        field: 'card',
        graphql: () => gql(cardQuery, { id: cardA }, undefined),
        rest: () => rest('GET', `/cards/${cardA}`, undefined),
      },
    ];
  }

  /** Runs one case through each entry point it names; counts it, and returns what went wrong (nothing when it held). */
  async function runCase(c: Case, tally: Tally): Promise<string[]> {
    const problems: string[] = [];
    if (c.graphql) {
      const result = await c.graphql();
      tally.requests++;
      const value = dataOf<Record<string, unknown>>(result)?.[c.field ?? ''];
      const codes = errorCodes(result);
      const ok =
        c.expect === 'allow'
          ? !!value && codes.length === 0
          : !value &&
            codes.length > 0 &&
            codes.every((code) => ['FORBIDDEN', 'NOT_FOUND', 'UNAUTHENTICATED'].includes(code)) &&
            result.status < 500;
      if (!ok) {
        tally.failures++;
        problems.push(`${c.name} via graphql: ${result.text.slice(0, 300)}`);
      }
    }
    if (c.rest) {
      const result = await c.rest();
      tally.requests++;
      const ok = c.expect === 'allow' ? result.status >= 200 && result.status < 300 : [401, 403, 404].includes(result.status);
      if (!ok) {
        tally.failures++;
        problems.push(`${c.name} via rest: ${result.status} ${result.text.slice(0, 300)}`);
      }
    }
    return problems;
  }

  it('lets each role read and reveal exactly what it owns, issued or administers', async () => {
    const tally = createTally();
    const problems: string[] = [];
    let violations: Violations = [];
    await runScenario(
      tally,
      () => ({
        id: 'attacks/rbac-reads',
        title: 'RBAC: 5 parties × read card / read charge / reveal, GraphQL and REST (cross-party by id refused)',
        faults: 0,
        failures: tally.failures,
        invariantViolations: violations.length,
      }),
      async () => {
        for (const c of readCases()) problems.push(...(await runCase(c, tally)));
        violations = await ledgerViolations(database);
      },
    );
    expect(problems).toEqual([]);
    expect(violations).toEqual([]);
  });

  it('refuses every cross-party and out-of-role write and writes nothing', async () => {
    const tally = createTally();
    await waitForSettlement(database.url);
    const before = await databaseFingerprint(database.url);
    const problems: string[] = [];
    let after: Record<string, string> | undefined;
    let violations: Violations = [];
    await runScenario(
      tally,
      () => ({
        id: 'attacks/rbac-writes',
        title: 'RBAC: cross-party and out-of-role writes (cancel, charge, refund, issue, rotate, users, API keys), GraphQL and REST',
        faults: 0,
        failures: tally.failures,
        // A refused write that changed the database breaks the scenario's invariant.
        invariantViolations: violations.length + (after && !isDeepStrictEqual(after, before) ? 1 : 0),
      }),
      async () => {
        for (const c of writeDenials()) problems.push(...(await runCase(c, tally)));
        after = await databaseFingerprint(database.url);
        violations = await ledgerViolations(database);
      },
    );
    expect(problems).toEqual([]);
    expect(after).toEqual(before);
    expect(violations).toEqual([]);
  });

  // Each list must hold the caller's own item as well as lack the other party's: an error or an
  // empty list lacks cardA/chargeA too, and would pass a check for absence alone.
  it('lists only the caller’s own cards and charges', async () => {
    const cardsOfB = await gql('{ cards(first: 100) { edges { node { id } } } }', undefined, userB.token);
    expect(errorCodes(cardsOfB), cardsOfB.text).toEqual([]);
    expect(cardsOfB.text).toContain(cardB);
    expect(cardsOfB.text).not.toContain(cardA);
    const chargesOfB = await gql('{ charges(first: 100) { nodes { id } } }', undefined, merchantB.token);
    expect(errorCodes(chargesOfB), chargesOfB.text).toEqual([]);
    expect(chargesOfB.text).toContain(chargeB);
    expect(chargesOfB.text).not.toContain(chargeA);
    const restCards = await rest('GET', '/cards?limit=100', userB.token);
    expect(restCards.status, restCards.text).toBe(200);
    expect(restCards.text).toContain(cardB);
    expect(restCards.text).not.toContain(cardA);
    const restCharges = await rest('GET', '/charges?limit=100', merchantB.token);
    expect(restCharges.status, restCharges.text).toBe(200);
    expect(restCharges.text).toContain(chargeB);
    expect(restCharges.text).not.toContain(chargeA);
  });
});

/**
 * Luhn-valid runs of 13–19 digits starting with a payment-network major industry identifier
 * (3–6): what a leaked PAN looks like. Epoch-millisecond timestamps (13 digits starting with
 * 1), decimal fractions and digits inside ids are not card numbers; the exact revealed PANs are
 * searched as plain substrings besides.
 */
function luhnRuns(text: string): string[] {
  const found: string[] = [];
  for (const match of text.matchAll(/(?<![\w.])[3-6]\d{12,18}(?![\w.])/g)) {
    const digits = match[0];
    let sum = 0;
    for (let i = 0; i < digits.length; i++) {
      let d = Number(digits[digits.length - 1 - i]);
      if (i % 2 === 1) {
        d *= 2;
        if (d > 9) d -= 9;
      }
      sum += d;
    }
    if (sum % 10 === 0) found.push(digits);
  }
  return found;
}

/** A test card number, as a client might paste it into a description; the suite never issues it. */
const probePan = '4111 1111 1111 1111';
const probePanDigits = probePan.replaceAll(' ', '');

function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? filesUnder(path) : [path];
  });
}

describe('PAN and CVC never leave the card secret', () => {
  it('keeps revealed PANs and CVCs out of logs, analytics, errors and every database column but pan_ciphertext', async () => {
    const tally = createTally();
    const revealed: { pan: string; cvc: string }[] = [];
    const revealProblems: string[] = [];
    let logLeaks: string[] = [];
    let errorLeaks: string[] = [];
    let analyticsLeaks: string[] = [];
    let analyticsFiles = 0;
    let textColumns = 0;
    const columnLeaks: string[] = [];
    /** What the PAN-in-a-description (and in-a-key) probes saw go wrong: a charge made, a field not named, the card spent. */
    const inputProbeProblems: string[] = [];
    let inputProbes = 0;
    let violations: Violations = [];
    await runScenario(
      tally,
      () => ({
        id: 'attacks/pan-leaks',
        title: `PAN/CVC scan after ${revealed.length} reveals and ${inputProbes} charges with a PAN in the description or key: ${cluster.allLogs().length} log lines, analytics store, error bodies, every text column`,
        faults: 0,
        failures:
          revealProblems.length +
          inputProbeProblems.length +
          logLeaks.length +
          errorLeaks.length +
          analyticsLeaks.length +
          columnLeaks.length,
        invariantViolations: violations.length,
      }),
      async () => {
        // Reveals are limited to 5 per caller per hour: each card gets its own owner, plus one admin.
        const revealer = await createParty(database, cluster.graphqlUrl, 'admin', 'pan-admin');
        for (let i = 0; i < 3; i++) {
          const owner = await createParty(database, cluster.graphqlUrl, 'user', `pan-owner-${i}`);
          const id = await issueCard(cluster.graphqlUrl, merchantA, owner.userId);
          for (const party of [owner, revealer]) {
            const result = await gql('mutation ($id: ID!) { revealCard(id: $id) { pan cvc } }', { id }, party.token);
            tally.requests++;
            const secret = dataOf<{ revealCard: { pan: string; cvc: string } }>(result)?.revealCard;
            if (secret && /^\d{13,19}$/.test(secret.pan)) revealed.push(secret);
            else revealProblems.push(`graphql reveal: ${result.text.slice(0, 300)}`);
          }
          const restReveal = await rest('POST', `/cards/${id}/reveal`, owner.token);
          tally.requests++;
          if (restReveal.status !== 200 || !restReveal.headers.get('cache-control')?.includes('no-store')) {
            revealProblems.push(
              `rest reveal: ${restReveal.status} ${restReveal.headers.get('cache-control')} ${restReveal.text.slice(0, 300)}`,
            );
          } else revealed.push(restReveal.json as { pan: string; cvc: string });
        }
        // Provoke errors around PANs: a PAN where an id goes.
        const pan = revealed[0]?.pan ?? '';
        await gql('query ($id: ID!) { card(id: $id) { id } }', { id: pan }, merchantA.token);
        await rest('GET', `/cards/${pan}`, merchantA.token);
        await rest('POST', '/charges', merchantA.token, { card_id: pan, amount: 100, currency: 'USD' }, { 'idempotency-key': 'pan-probe' });
        tally.requests += 3;

        // A PAN in a charge's description (kept in the charge row, its events and the key's replay,
        // and streamed to subscribers) or in its idempotency key (kept in clear): refused with
        // BAD_USER_INPUT naming the field, through the bridge and the router, before anything is
        // written. The card stays unused: a charge with a clean description then succeeds.
        const probeCard = await issueCard(cluster.graphqlUrl, merchantA, userA.userId);
        tally.requests++;
        const restBody = (description: string) => ({ card_id: probeCard, amount: 100, currency: 'USD', description });
        const chargeMutation =
          'mutation ($input: CreateChargeInput!, $key: String!) { createCharge(input: $input, idempotencyKey: $key) { id status description } }';
        const graphqlCharge = (description: string, key: string) =>
          gql(chargeMutation, { input: { cardId: probeCard, amount: 100, currency: 'USD', description }, key }, merchantA.token);
        const fieldsOf = (result: HttpResult, graphqlApi: boolean) =>
          graphqlApi
            ? ((result.json as { errors?: { extensions?: { fields?: { field: string }[] } }[] } | undefined)?.errors ?? []).flatMap((e) =>
                (e.extensions?.fields ?? []).map((f) => f.field),
              )
            : ((result.json as { error?: { fields?: { field: string }[] } } | undefined)?.error?.fields ?? []).map((f) => f.field);
        const probes: { name: string; field: string; graphqlApi: boolean; send: () => Promise<HttpResult> }[] = [
          {
            name: 'REST description',
            field: 'description',
            graphqlApi: false,
            send: () =>
              rest('POST', '/charges', merchantA.token, restBody(`paid with ${probePan}`), {
                'idempotency-key': 'pan-in-description-rest',
              }),
          },
          {
            name: 'GraphQL description',
            field: 'input.description',
            graphqlApi: true,
            send: () => graphqlCharge(`paid with ${probePan}`, 'pan-in-description-graphql'),
          },
          {
            name: 'REST idempotency key',
            field: 'Idempotency-Key',
            graphqlApi: false,
            send: () => rest('POST', '/charges', merchantA.token, restBody('order 5'), { 'idempotency-key': `order-${probePanDigits}` }),
          },
          {
            name: 'GraphQL idempotency key',
            field: 'idempotencyKey',
            graphqlApi: true,
            send: () => graphqlCharge('order 5', `order-${probePanDigits}`),
          },
        ];
        for (const probe of probes) {
          const result = await probe.send();
          tally.requests++;
          inputProbes++;
          const refused = probe.graphqlApi
            ? result.status < 500 &&
              !dataOf<{ createCharge?: unknown }>(result)?.createCharge &&
              isDeepStrictEqual(errorCodes(result), ['BAD_USER_INPUT'])
            : result.status === 400 && (result.json as { error?: { code?: string } } | undefined)?.error?.code === 'BAD_USER_INPUT';
          if (!refused || !isDeepStrictEqual(fieldsOf(result, probe.graphqlApi), [probe.field])) {
            inputProbeProblems.push(`${probe.name}: ${result.status} ${result.text.slice(0, 300)}`);
          }
        }
        const unused = await rest('GET', `/cards/${probeCard}`, merchantA.token);
        tally.requests++;
        const unusedCard = unused.json as { status?: string; used_at?: string | null } | undefined;
        if (unused.status !== 200 || unusedCard?.status !== 'active' || unusedCard.used_at !== null) {
          inputProbeProblems.push(`card after the probes: ${unused.status} ${unused.text.slice(0, 300)}`);
        }
        const clean = await rest('POST', '/charges', merchantA.token, restBody('paid by card'), { 'idempotency-key': 'pan-probe-clean' });
        tally.requests++;
        if (clean.status !== 201 || (clean.json as { status?: string } | undefined)?.status !== 'authorized') {
          inputProbeProblems.push(`clean charge after the probes: ${clean.status} ${clean.text.slice(0, 300)}`);
        }
        // Through both APIs, the card holds the one clean charge and no description holds the PAN.
        const listed = await rest('GET', `/charges?card_id=${probeCard}&limit=100`, merchantA.token);
        const graphList = await gql(
          'query ($card: ID!) { charges(filter: {cardId: $card}, first: 100) { nodes { id description } } }',
          { card: probeCard },
          merchantA.token,
        );
        tally.requests += 2;
        const restDescriptions = ((listed.json as { data?: { description: string | null }[] } | undefined)?.data ?? []).map(
          (c) => c.description,
        );
        const graphDescriptions = (dataOf<{ charges?: { nodes: { description: string | null }[] } }>(graphList)?.charges?.nodes ?? []).map(
          (c) => c.description,
        );
        if (!isDeepStrictEqual(restDescriptions, ['paid by card']) || !isDeepStrictEqual(graphDescriptions, ['paid by card'])) {
          inputProbeProblems.push(`charges of the probe card: ${listed.text.slice(0, 300)} | ${graphList.text.slice(0, 300)}`);
        }
        // Let the router's emitter flush request events to analytics.
        await new Promise((done) => setTimeout(done, 2_000));

        // The revealed PANs, and the probes' PAN (sent split by spaces: looked for with separators dropped).
        const pans = new Set(revealed.map((r) => r.pan));
        const leaksIn = (text: string) => [
          ...[...pans].filter((p) => text.includes(p)),
          ...(text.replace(/[ -]/g, '').includes(probePanDigits) ? [probePanDigits] : []),
        ];
        const cvcPattern = /"cvc"\s*:\s*"?\d{3,4}/i;

        logLeaks = cluster.allLogs().filter((line) => leaksIn(line).length > 0 || luhnRuns(line).length > 0 || cvcPattern.test(line));
        // Errors never echo the PAN (the probes above sent it in ids and bodies).
        errorLeaks = seenBodies.filter((body) => body.includes('"error') && leaksIn(body).length > 0);
        const files = filesUnder(cluster.dataDir);
        analyticsFiles = files.length;
        analyticsLeaks = files.flatMap((file) => {
          const text = readFileSync(file, 'latin1');
          return [...leaksIn(text), ...luhnRuns(text)].map(
            (run) => `${file}: …${text.slice(Math.max(0, text.indexOf(run) - 80), text.indexOf(run) + 30)}…`,
          );
        });

        const client = new pg.Client({ connectionString: database.url });
        await client.connect();
        try {
          const columns = await client.query<{ table_schema: string; table_name: string; column_name: string }>(
            "select table_schema, table_name, column_name from information_schema.columns where table_schema in ('auth', 'cards', 'charges') and data_type in ('text', 'character varying', 'jsonb', 'json', 'bytea', 'character')",
          );
          textColumns = columns.rows.length;
          for (const { table_schema, table_name, column_name } of columns.rows) {
            if (table_schema === 'cards' && table_name === 'cards' && column_name === 'pan_ciphertext') continue;
            const rows = await client.query<{ v: string }>(
              `select "${column_name}"::text as v from "${table_schema}"."${table_name}" where "${column_name}" is not null`,
            );
            for (const { v } of rows.rows) {
              if (leaksIn(v).length > 0 || luhnRuns(v).length > 0) columnLeaks.push(`${table_schema}.${table_name}.${column_name}`);
            }
          }
        } finally {
          await client.end();
        }
        violations = await ledgerViolations(database);
      },
    );
    expect(revealProblems, 'every reveal answered a PAN (GraphQL) or 200 with no-store (REST)').toEqual([]);
    expect(revealed).toHaveLength(9);
    expect(inputProbeProblems, 'a PAN in a description or key refused (BAD_USER_INPUT naming it), the card unspent').toEqual([]);
    expect(inputProbes).toBe(4);
    expect(logLeaks.slice(0, 3), 'PAN/CVC in a service log line').toEqual([]);
    expect(errorLeaks.slice(0, 3), 'PAN echoed in an error').toEqual([]);
    expect(analyticsLeaks, 'PAN in the analytics store').toEqual([]);
    expect(analyticsFiles, 'analytics stored nothing: the scan proved nothing').toBeGreaterThan(0);
    expect(textColumns).toBeGreaterThan(5);
    expect(columnLeaks, 'PAN in a database column').toEqual([]);
    expect(violations).toEqual([]);
  });
});

describe('the bridge’s security headers and CORS', () => {
  it('sends the security headers on successes and errors, and no framework banner', async () => {
    for (const [method, path, token] of [
      ['GET', `/cards/${cardA}`, merchantA.token],
      ['GET', '/cards/card_missing', merchantA.token],
      ['GET', `/cards/${cardA}`, undefined],
      ['GET', '/no-such-route', undefined],
    ] as const) {
      const result = await rest(method, path, token);
      expect(result.headers.get('x-content-type-options'), path).toBe('nosniff');
      expect(result.headers.get('x-frame-options'), path).toBe('DENY');
      expect(result.headers.get('content-security-policy'), path).toContain("frame-ancestors 'none'");
      expect(result.headers.get('referrer-policy'), path).toBe('no-referrer');
      expect(result.headers.get('x-powered-by'), path).toBeNull();
      expect(result.text).not.toMatch(stackTracePattern);
    }
  });

  it('allows only the configured origin, never a wildcard, and answers foreign preflights without grants', async () => {
    const allowed = await rest('GET', `/cards/${cardA}`, merchantA.token, undefined, { origin: allowedOrigin });
    expect(allowed.headers.get('access-control-allow-origin')).toBe(allowedOrigin);
    const foreign = await rest('GET', `/cards/${cardA}`, merchantA.token, undefined, { origin: 'https://evil.example' });
    expect(foreign.headers.get('access-control-allow-origin')).toBeNull();
    const nullOrigin = await rest('GET', `/cards/${cardA}`, merchantA.token, undefined, { origin: 'null' });
    expect(nullOrigin.headers.get('access-control-allow-origin')).toBeNull();
    const preflight = (origin: string) =>
      request(`${cluster.bridgeUrl}/charges`, {
        method: 'OPTIONS',
        headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, idempotency-key' },
      });
    const goodPreflight = await preflight(allowedOrigin);
    expect(goodPreflight.headers.get('access-control-allow-origin')).toBe(allowedOrigin);
    expect(goodPreflight.headers.get('access-control-allow-headers')).toContain('idempotency-key');
    const badPreflight = await preflight('https://evil.example');
    expect(badPreflight.headers.get('access-control-allow-origin')).toBeNull();
    expect(badPreflight.headers.get('access-control-allow-methods')).toBeNull();
    expect(allowed.headers.get('access-control-allow-credentials')).not.toBe('true');
  });
});
