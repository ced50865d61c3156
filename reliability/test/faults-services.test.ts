import { freshDatabase, type RedisServer, startRedisServer, type TestDatabase } from '@ghostpay/test-support';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Cluster, createParty, dataOf, errorCodes, exchangeApiKey, graphql, type Party, startCluster } from '../src/cluster.ts';
import type { Attempt } from '../src/load-balancer.ts';
import { recordScenario } from '../src/results.ts';
import {
  charge,
  chargeEveryCard,
  convergenceProblems,
  createTestSigningKey,
  issueCard,
  issueCards,
  ledgerViolations,
  metricValue,
  sleep,
  waitForSettlement,
} from '../src/suite-fixture.ts';

const limitedPerMinute = 30;

/** The `kid` in a JWT's header. */
function tokenKid(token: string): string {
  return (JSON.parse(Buffer.from(token.split('.')[0] ?? '', 'base64url').toString()) as { kid?: string }).kid ?? '?';
}

let database: TestDatabase;
let redis: RedisServer;
let cluster: Cluster;
let admin: Party;
let merchant: Party;
let limited: Party;
let owner: Party;

beforeAll(async () => {
  database = await freshDatabase({ poolSize: 2 });
  // Our own redis-server: the Redis scenario stops it.
  redis = await startRedisServer();
  const key = await createTestSigningKey();
  cluster = await startCluster({
    databaseUrl: database.url,
    redisUrl: redis.url,
    testJwk: key.publicJwk,
    replicas: true,
    env: {
      ROUTER_BREAKER_FAILURES: '3',
      ROUTER_BREAKER_OPEN_MS: '1000',
      SHUTDOWN_TIMEOUT_MS: '10000',
      // The shortest rotation spacing auth allows (35 s), so the rotation scenario can rotate twice.
      JWKS_MAX_AGE_SECONDS: '0',
    },
  });
  [admin, merchant, limited, owner] = await Promise.all([
    createParty(database, cluster.graphqlUrl, 'admin', 'faults-admin'),
    createParty(database, cluster.graphqlUrl, 'merchant', 'faults-merchant'),
    createParty(database, cluster.graphqlUrl, 'merchant', 'faults-limited'),
    createParty(database, cluster.graphqlUrl, 'user', 'faults-owner'),
  ]);
  // A per-key override below the router default, read from auth.api_keys on the key's first request.
  const client = new pg.Client({ connectionString: database.url });
  await client.connect();
  await client.query('update auth.api_keys set rate_limit_per_minute = $1 where id = $2', [limitedPerMinute, limited.apiKeyId]);
  await client.end();
});

afterAll(async () => {
  await cluster?.close();
  await redis?.stop();
  await database?.close();
});

async function finish(
  id: string,
  title: string,
  figures: { requests: number; faults: number; failures: number; notes?: string; started: number },
  cardIds: string[] = [],
  acknowledged = new Map<string, string>(),
) {
  const problems = cardIds.length ? await convergenceProblems(database.url, cardIds, acknowledged) : [];
  const violations = await ledgerViolations(database);
  recordScenario({
    id,
    title,
    requests: figures.requests,
    faults: figures.faults,
    failures: figures.failures + problems.length,
    invariantViolations: violations.length,
    ...(figures.notes ? { notes: figures.notes } : {}),
    durationMs: Math.round(performance.now() - figures.started),
  });
  expect(problems).toEqual([]);
  expect(violations).toEqual([]);
}

describe('service faults under load', () => {
  it('answers partial data fast while a subgraph is killed, keeps charging, and recovers after its restart', async () => {
    const started = performance.now();
    const card = await issueCard(cluster.graphqlUrl, merchant, owner.userId);
    const cards = await issueCards(cluster.graphqlUrl, merchant, owner.userId, 40);
    const query = 'query Partial($u: ID!, $c: ID!) { user(id: $u) { id } card(id: $c) { id } }';
    const variables = { u: merchant.userId, c: card };
    expect(dataOf(await graphql(cluster.graphqlUrl, query, variables, merchant.token))).toEqual({
      user: { id: merchant.userId },
      card: { id: card },
    });

    // Every replica verifies tokens against the JWKS it has cached: warm both charges
    // processes up first (a replica that has never fetched the JWKS cannot verify anything
    // while auth is down — that is expected and not what this scenario is about).
    const warmUp = await issueCards(cluster.graphqlUrl, merchant, owner.userId, 4);
    for (const id of warmUp) expect((await charge(cluster.graphqlUrl, merchant, id, `warm-${id}`)).ok).toBe(true);
    await cluster.services.auth.stop('SIGKILL');
    const load = chargeEveryCard(cluster.graphqlUrl, merchant, cards, {
      concurrency: 4,
      retryForMs: 0,
      keyPrefix: 'kill-auth',
      pauseMs: 50,
      overallDeadlineMs: 30_000,
    });
    let partialOk = 0;
    let requests = 0;
    // Why each answer lacked auth's fields, as the router says it ("… is unavailable (reason)"),
    // to admin tokens only: other callers get a fixed message under the same code. Fast means
    // none of them waited out a subgraph deadline ("timed out after … ms"): a killed process
    // refuses at once, and then the open breaker answers without calling it.
    const reasons: string[] = [];
    for (let i = 0; i < 20; i++) {
      const result = await graphql(cluster.graphqlUrl, query, variables, admin.token);
      requests++;
      const messages = ((result.json as { errors?: { message?: string }[] } | undefined)?.errors ?? []).map((e) => e.message ?? '');
      reasons.push(...messages.map((m) => /is unavailable \((.*)\)$/.exec(m)?.[1] ?? m));
      if (
        JSON.stringify(dataOf(result)) === JSON.stringify({ user: null, card: { id: card } }) &&
        errorCodes(result).join() === 'SUBGRAPH_UNAVAILABLE'
      )
        partialOk++;
    }
    // Each router's own state (0 closed, 1 half-open, 2 open): a sum would take two half-open breakers for an open one.
    const breakerStates = [
      await metricValue(cluster.services.router.url, 'circuit_breaker_state', { subgraph: 'auth' }),
      await metricValue(cluster.services.router2.url, 'circuit_breaker_state', { subgraph: 'auth' }),
    ];
    const result = await load;
    await cluster.services.auth.start();
    let recovered = false;
    for (let i = 0; i < 100 && !recovered; i++) {
      const again = await graphql(cluster.graphqlUrl, query, variables, merchant.token);
      requests++;
      recovered = JSON.stringify(dataOf(again)) === JSON.stringify({ user: { id: merchant.userId }, card: { id: card } });
      if (!recovered) await sleep(200);
    }
    const waited = reasons.filter((reason) => /timed out/.test(reason));
    await finish(
      'faults/subgraph-killed',
      'The auth subgraph SIGKILLed under charge load, then restarted (2 routers, breaker opens, partial data, recovery)',
      {
        requests: requests + result.attempts,
        faults: 1,
        failures: 20 - partialOk + waited.length + result.failedAttempts + (recovered ? 0 : 1),
        notes: `partial answers with SUBGRAPH_UNAVAILABLE: ${partialOk}/20; answers that waited out a subgraph timeout: ${waited.length}; answered by the open breaker: ${reasons.filter((r) => r === 'circuit open').length}; ${result.acknowledged.size} charges during the outage`,
        started,
      },
      cards,
      result.acknowledged,
    );
    expect(partialOk).toBe(20);
    expect(waited).toEqual([]);
    expect(reasons).toContain('circuit open');
    expect(breakerStates, 'the breaker is open (state 2) on at least one router').toContain(2);
    expect(result.failedAttempts, [...result.failureCodes].join(' ')).toBe(0);
    expect(recovered).toBe(true);
  });

  it('holds the per-key limit locally and keeps payments flowing while Redis is down', async () => {
    const started = performance.now();
    const cards = await issueCards(cluster.graphqlUrl, merchant, owner.userId, 30);
    const limitedToken = limited.token;
    await redis.stop();
    const fallbackBefore = await metricValue(cluster.services.router.url, 'rate_limit_redis_fallback_total');
    const load = chargeEveryCard(cluster.graphqlUrl, merchant, cards, {
      concurrency: 3,
      retryForMs: 0,
      keyPrefix: 'redis-down',
      pauseMs: 30,
      overallDeadlineMs: 30_000,
    });
    // One router, directly: with Redis down each replica enforces the limit locally (documented fail-open policy).
    const outcomes = { ok: 0, limited: 0, other: 0, retryAfter: 0 };
    for (let i = 0; i < limitedPerMinute + 10; i++) {
      const response = await graphql(`${cluster.services.router.url}/graphql`, '{ me { id } }', undefined, limitedToken);
      if (response.status === 429 && errorCodes(response).includes('RATE_LIMITED')) {
        outcomes.limited++;
        if (Number(response.headers.get('retry-after')) > 0) outcomes.retryAfter++;
      } else if (response.status === 200 && dataOf<{ me: { id: string } }>(response)?.me) outcomes.ok++;
      else outcomes.other++;
    }
    const fallbackAfter = await metricValue(cluster.services.router.url, 'rate_limit_redis_fallback_total');
    const result = await load;
    await redis.start();
    await finish(
      'faults/redis-down',
      `Redis stopped: a key limited to ${limitedPerMinute}/min sends ${limitedPerMinute + 10} requests to one router while charges flow`,
      {
        requests: limitedPerMinute + 10 + result.attempts,
        faults: 1,
        failures: result.failedAttempts + outcomes.other + (outcomes.ok === limitedPerMinute ? 0 : 1),
        notes: `admitted ${outcomes.ok}, refused 429 ${outcomes.limited} (Retry-After on ${outcomes.retryAfter}); redis fallback decisions ${fallbackAfter - fallbackBefore}; ${result.acknowledged.size} charges`,
        started,
      },
      cards,
      result.acknowledged,
    );
    expect(outcomes).toEqual({ ok: limitedPerMinute, limited: 10, other: 0, retryAfter: 10 });
    expect(fallbackAfter).toBeGreaterThan(fallbackBefore);
    expect(result.failedAttempts).toBe(0);
  });

  it('charges without a single failure while analytics is down', async () => {
    const started = performance.now();
    const cards = await issueCards(cluster.graphqlUrl, merchant, owner.userId, 60);
    await cluster.services.analytics.stop('SIGKILL');
    const result = await chargeEveryCard(cluster.graphqlUrl, merchant, cards, {
      concurrency: 6,
      retryForMs: 0,
      keyPrefix: 'analytics-down',
      pauseMs: 10,
      overallDeadlineMs: 30_000,
    });
    await cluster.services.analytics.start();
    await finish(
      'faults/analytics-down',
      'Analytics SIGKILLed while charges flow through 2 routers (request events keep being emitted and dropped)',
      { requests: result.attempts, faults: 1, failures: result.failedAttempts, notes: `${result.acknowledged.size} charges`, started },
      cards,
      result.acknowledged,
    );
    expect(result.failedAttempts).toBe(0);
    expect(result.acknowledged.size).toBe(cards.length);
  });

  for (const target of ['router', 'charges'] as const) {
    it(`drains a ${target} process on SIGTERM behind the load balancer: zero failed requests, in-flight charges committed`, async () => {
      const started = performance.now();
      const cards = await issueCards(cluster.graphqlUrl, merchant, owner.userId, 120);
      const load = chargeEveryCard(cluster.graphqlUrl, merchant, cards, {
        concurrency: 8,
        retryForMs: 0,
        keyPrefix: `sigterm-${target}`,
        pauseMs: 40,
        overallDeadlineMs: 45_000,
      });
      await sleep(700);
      const service = cluster.services[target];
      const balancer = cluster.balancers?.[target];
      if (!balancer) throw new Error('the cluster runs without replicas');
      // SIGTERM while the process is working on requests (in flight for 5 ms or more: read and
      // being served, not still on the wire): a drain answers each of them itself. Without this the
      // scenario could not fail: the balancer retries a reset request on the other replica with
      // the same idempotency key, so a process that died on SIGTERM lost nothing either.
      let inFlightAtSigterm: Attempt[] = [];
      for (const giveUp = Date.now() + 10_000; Date.now() < giveUp; await sleep(1)) {
        inFlightAtSigterm = balancer.inFlight(service.url).filter((attempt) => performance.now() - attempt.startedAt >= 5);
        if (inFlightAtSigterm.length > 0) break;
      }
      await service.stop('SIGTERM');
      await sleep(500);
      await service.start();
      const result = await load;
      const notDrained = inFlightAtSigterm.filter((attempt) => attempt.outcome?.kind !== 'answered' || attempt.outcome.status !== 200);
      await finish(
        `faults/sigterm-${target}`,
        `SIGTERM to one of two ${target} processes under charge load, behind a round-robin load balancer; restarted`,
        {
          requests: result.attempts,
          faults: 1,
          failures: result.failedAttempts + result.mismatches.length + result.unconverged.length + notDrained.length,
          notes: `${result.acknowledged.size} charges; ${inFlightAtSigterm.length - notDrained.length}/${inFlightAtSigterm.length} requests in flight at SIGTERM answered 200 by the draining process; load balancer retried ${balancer.stats.retries} connection failures on the other replica`,
          started,
        },
        cards,
        result.acknowledged,
      );
      expect(inFlightAtSigterm.length, 'requests were in flight at the process when it got SIGTERM').toBeGreaterThan(0);
      expect(
        notDrained.map((attempt) => attempt.outcome),
        'every request in flight at SIGTERM was answered 200 by the draining process',
      ).toEqual([]);
      expect(result.failedAttempts, [...result.failureCodes].join(' ')).toBe(0);
      expect(result.mismatches).toEqual([]);
      expect(result.acknowledged.size).toBe(cards.length);
    });
  }

  // Two rotations 36 s apart: auth refuses a rotation until the next key has been published for
  // its rotation spacing, JWKS_MAX_AGE_SECONDS (0 in this stack) + 35 s (verifiers refetch the
  // JWKS on an unknown kid at most once per 30 s cooldown, platform jwt-verifier), so rotations
  // as close as auth allows must fail no request (see RELIABILITY.md).
  it('rotates the signing key twice under load with zero failed requests', async () => {
    const started = performance.now();
    const cards = await issueCards(cluster.graphqlUrl, merchant, owner.userId, 220);
    let next = 0;
    let requests = 0;
    const failures: string[] = [];
    const rotations: string[] = [];
    // The kid of every token whose charge and read both succeeded: each rotation's new key must be among them, or the
    // scenario never used a token signed by a key the verifiers had to learn.
    const usedKids = new Set<string>();
    // Load runs until 3 s after the second rotation (bounded by the card count and 50 s).
    let stopAt = Date.now() + 50_000;
    const worker = async () => {
      // Each round: a brand-new token (signed with whatever key is current now), then a charge and a read with it.
      while (Date.now() < stopAt && next < cards.length) {
        const cardId = cards[next++] as string;
        let token: string;
        try {
          token = await exchangeApiKey(cluster.graphqlUrl, merchant.apiKey);
        } catch (error) {
          failures.push(`token: ${(error as Error).message.slice(0, 200)}`);
          requests++;
          continue;
        }
        const outcome = await charge(cluster.graphqlUrl, { ...merchant, token }, cardId, `rotation-${cardId}`);
        const read = await graphql(cluster.graphqlUrl, 'query ($c: ID!) { card(id: $c) { id status } }', { c: cardId }, token);
        requests += 3;
        if (!outcome.ok) failures.push(`charge: ${outcome.codes.join(',') || outcome.transportError}`);
        if (!dataOf<{ card: { id: string } }>(read)?.card) failures.push(`read: ${read.text.slice(0, 200)}`);
        if (outcome.ok && dataOf<{ card: { id: string } }>(read)?.card) usedKids.add(tokenKid(token));
        await sleep(800);
      }
    };
    const rotator = (async () => {
      for (const wait of [2_000, 36_000]) {
        await sleep(wait);
        const result = await graphql(cluster.graphqlUrl, 'mutation { rotateSigningKey { kid state } }', undefined, admin.token);
        requests++;
        if (errorCodes(result).length) failures.push(`rotate: ${result.text.slice(0, 200)}`);
        else
          rotations.push(
            dataOf<{ rotateSigningKey: { kid: string; state: string }[] }>(result)?.rotateSigningKey.find((k) => k.state === 'CURRENT')
              ?.kid ?? '?',
          );
      }
      stopAt = Math.min(stopAt, Date.now() + 3_000);
    })();
    await Promise.all([rotator, ...Array.from({ length: 4 }, worker)]);
    await waitForSettlement(database.url).catch(() => {});
    await finish(
      'rotation/signing-key',
      'Signing-key rotation ×2 (rotateSigningKey as admin, 36 s apart, the spacing auth allows) while fresh tokens are minted and used for charges and reads',
      {
        requests,
        faults: rotations.length,
        failures: failures.length + rotations.filter((kid) => !usedKids.has(kid)).length,
        notes: `${next} cards charged with tokens minted across the rotations, signed by ${usedKids.size} keys`,
        started,
      },
    );
    expect(rotations.length).toBe(2);
    expect(failures.slice(0, 5)).toEqual([]);
    expect(new Set(rotations).size, `each rotation made a new key current: ${rotations.join(', ')}`).toBe(2);
    expect(
      rotations.filter((kid) => !usedKids.has(kid)),
      `tokens signed by each new key were used (kids used: ${[...usedKids].join(', ')})`,
    ).toEqual([]);
  });
});
