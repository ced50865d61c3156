import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { authConfigSchema, createAuthService, seedUser } from '@ghostpay/auth';
import { cardsConfigSchema, createCardsService } from '@ghostpay/cards';
import { createJwtVerifier, createSecretsProvider, envNameForSecret, type Role } from '@ghostpay/platform';
import { createSeed, freePort, freshDatabase, type TestDatabase } from '@ghostpay/test-support';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { composeRepoSupergraph, post, repoRoot } from './router-harness.ts';
import { type Collected, silent, statuses, until, watchCharge, wsClient } from './subscriptions-harness.ts';

const node = resolve(repoRoot, 'node_modules/.bin/node');

interface Process {
  child: ChildProcess;
  url: string;
  output: () => string;
}

/** Starts `node <main.ts>` with env and resolves once it logs that it listens. */
function startProcess(main: string, env: Record<string, string>): Promise<Process> {
  const child = spawn(node, [resolve(repoRoot, main)], {
    env: { PATH: process.env.PATH, NODE_ENV: 'test', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  return new Promise((resolveStart, reject) => {
    const timer = setTimeout(() => reject(new Error(`${main} did not start:\n${output}`)), 30_000);
    const onExit = (code: number | null) => {
      clearTimeout(timer);
      reject(new Error(`${main} exited with ${code}:\n${output}`));
    };
    child.stdout?.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      const line = output.split('\n').find((l) => l.includes('"msg":"listening"'));
      const url = line && /"url":"(http:\/\/127\.0\.0\.1:\d+)"/.exec(line)?.[1];
      if (url) {
        clearTimeout(timer);
        child.off('exit', onExit);
        resolveStart({ child, url, output: () => output });
      }
    });
    child.stderr?.on('data', (chunk: Buffer) => {
      output += chunk.toString();
    });
    child.once('exit', onExit);
  });
}

async function stop(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM') {
  if (child.exitCode !== null || child.signalCode !== null) return;
  await new Promise<void>((done) => {
    child.once('exit', () => done());
    child.kill(signal);
    setTimeout(() => child.kill('SIGKILL'), 5_000).unref();
  });
}

describe('subscriptions across two router processes and two charges processes', () => {
  let database: TestDatabase;
  let auth: ReturnType<typeof createAuthService>;
  let cards: ReturnType<typeof createCardsService>;
  const secretProviders: ReturnType<typeof createSecretsProvider>[] = [];
  const processes: Process[] = [];
  const chargesPorts: number[] = [];
  const chargesEnv: Record<string, string>[] = [];
  let charges: Process[] = [];
  let routers: Process[] = [];
  let workDir: string;

  /** Exchanges a seeded user's API key at the real auth service. */
  const tokenFor = async (role: Role) => {
    const { apiKey, user } = await seedUser(database, {
      name: `${role} ${randomUUID().slice(0, 6)}`,
      email: `${randomUUID()}@example.test`,
      role,
    });
    const response = await post(`${auth.url}/graphql`, {
      query: 'mutation ($k: String!) { createToken(apiKey: $k) { accessToken } }',
      variables: { k: apiKey },
    });
    const token = (response.body.data as { createToken: { accessToken: string } }).createToken.accessToken;
    return { userId: user.id, apiKey, bearer: `Bearer ${token}` };
  };

  const startCharges = async (index: number) => {
    const started = await startProcess('subgraphs/charges/src/main.ts', { ...(chargesEnv[index] as Record<string, string>) });
    processes.push(started);
    charges[index] = started;
    return started;
  };

  beforeAll(async () => {
    database = await freshDatabase({ poolSize: 20 });
    if (!database.url) throw new Error('this test needs the PostgreSQL cluster (processes share the database)');
    const authSecrets = createSecretsProvider({ env: { [envNameForSecret('signing-kek')]: `k1:${randomBytes(32).toString('base64')}` } });
    secretProviders.push(authSecrets);
    auth = createAuthService({
      database,
      secrets: authSecrets,
      logger: silent('auth'),
      config: authConfigSchema.parse({ NODE_ENV: 'test', LOG_LEVEL: 'silent' }),
    });
    await auth.start(0);
    const jwksUrl = `${auth.url}/.well-known/jwks.json`;
    const verifier = createJwtVerifier({ jwksUrl, issuer: 'ghostpay-auth', audience: 'ghostpay-api' });
    const cardSecrets = createSecretsProvider({
      env: {
        [envNameForSecret('pan-encryption-keys')]: `k1:${randomBytes(32).toString('base64')}`,
        [envNameForSecret('pan-fingerprint-key')]: randomBytes(32).toString('base64'),
        [envNameForSecret('cvc-key')]: randomBytes(32).toString('base64'),
      },
    });
    secretProviders.push(cardSecrets);
    cards = createCardsService({
      database,
      secrets: cardSecrets,
      logger: silent('cards'),
      config: cardsConfigSchema.parse({ NODE_ENV: 'test', LOG_LEVEL: 'silent' }),
      verifier,
    });
    await cards.start(0);

    for (let i = 0; i < 2; i++) {
      chargesPorts.push(await freePort());
      chargesEnv.push({
        CHARGES_PORT: String(chargesPorts[i]),
        DATABASE_URL: database.url,
        JWKS_URL: jwksUrl,
        SHUTDOWN_TIMEOUT_MS: '500',
        // Only the second replica settles, so settlement commits come from a process the first router is not connected to.
        SETTLEMENT_ENABLED: i === 1 ? 'true' : 'false',
        // Long enough that, even on a loaded machine, the kill test has killed charges #1 before this settles.
        SETTLEMENT_DELAY_MS: '8000',
        SETTLEMENT_INTERVAL_MS: '200',
      });
    }
    charges = [];
    await Promise.all([startCharges(0), startCharges(1)]);

    workDir = mkdtempSync(join(tmpdir(), 'ghostpay-subscriptions-'));
    const supergraphPath = join(workDir, 'supergraph.graphql');
    writeFileSync(supergraphPath, composeRepoSupergraph());
    // The router's own service account: an admin API key it exchanges for its upstream token.
    const service = await seedUser(database, { name: 'router subscriptions', email: `${randomUUID()}@example.test`, role: 'admin' });
    routers = await Promise.all(
      [0, 1].map(async (i) => {
        const started = await startProcess('router/src/main.ts', {
          ROUTER_PORT: '0',
          ROUTER_SUPERGRAPH_PATH: supergraphPath,
          ROUTER_SUBGRAPH_URLS: `auth=${auth.url}/graphql,cards=${cards.url}/graphql,charges=http://127.0.0.1:${chargesPorts[i]}/graphql`,
          JWKS_URL: jwksUrl,
          SHUTDOWN_TIMEOUT_MS: '500',
          ROUTER_PLAYGROUND: 'false',
          LOG_LEVEL: 'debug',
          [envNameForSecret('router-subscriptions-api-key')]: service.apiKey,
        });
        processes.push(started);
        return started;
      }),
    );
  }, 120_000);

  afterAll(async () => {
    await Promise.all(processes.map((p) => stop(p.child)));
    await cards?.close();
    await auth?.close();
    for (const provider of secretProviders) provider.close();
    if (workDir) rmSync(workDir, { recursive: true, force: true });
    await database?.close();
  });

  /** The router's upstream-subscription log lines, for failure messages. */
  const routerLogTail = (i: number) =>
    (routers[i]?.output() ?? '')
      .split('\n')
      .filter((line) => /upstream|subscri/i.test(line))
      .slice(-60)
      .join('\n');
  const routerGraphql = (i: number) => `${routers[i]?.url}/graphql`;
  const routerWs = (i: number) => `${routers[i]?.url.replace(/^http/, 'ws')}/graphql`;

  /** A card owned by a fresh user (with a real token), charged through router `via`. */
  const chargeThrough = async (via: number) => {
    const owner = await tokenFor('user');
    const merchant = await tokenFor('merchant');
    const card = await createSeed(database.db).card({ ownerId: owner.userId, issuerId: merchant.userId, amount: 5_000 });
    const response = await post(
      routerGraphql(via),
      {
        query: 'mutation ($input: CreateChargeInput!, $key: String!) { createCharge(input: $input, idempotencyKey: $key) { id status } }',
        variables: { input: { cardId: card.id, amount: 2_000, currency: 'USD' }, key: randomUUID() },
      },
      { authorization: merchant.bearer },
    );
    const charge = (response.body.data as { createCharge: { id: string; status: string } } | null)?.createCharge;
    if (!charge) throw new Error(`createCharge failed: ${JSON.stringify(response.body)}`);
    return { chargeId: charge.id, owner, merchant, card };
  };

  const refundThrough = async (via: number, bearer: string, chargeId: string, amount?: number) => {
    const response = await post(
      routerGraphql(via),
      {
        query:
          'mutation ($id: ID!, $amount: Int, $key: String!) { refundCharge(id: $id, amount: $amount, idempotencyKey: $key) { id status } }',
        variables: { id: chargeId, amount, key: randomUUID() },
      },
      { authorization: bearer },
    );
    expect(response.body.errors).toBeUndefined();
  };

  it('delivers every status change, whichever charges process commits it, to subscribers on both routers', {
    timeout: 90_000,
  }, async () => {
    const { chargeId, owner, merchant, card } = await chargeThrough(0);
    const clients = [0, 0, 1, 1].map((i) => wsClient(routerWs(i), owner.bearer));
    try {
      const watches = clients.map((c) => watchCharge(c, chargeId));
      await until(() => watches.every((w) => w.events.length >= 1 || w.errors.length > 0), 'first events', 20_000);
      expect(watches.flatMap((w) => w.errors)).toEqual([]);
      // SETTLED is committed by charges process 2 (its worker): router 1 hears it through charges process 1.
      await until(() => watches.every((w) => statuses(w).includes('SETTLED')), 'SETTLED on both routers', 30_000);
      // The refund goes through router 1 to charges process 1: router 2 hears it through charges process 2.
      await refundThrough(0, merchant.bearer, chargeId);
      await until(() => watches.every((w) => statuses(w).includes('REFUNDED')), 'REFUNDED on both routers', 20_000);
      for (const w of watches) {
        expect(statuses(w)).toEqual(['AUTHORIZED', 'SETTLED', 'REFUNDED']);
        expect(w.events.every((e) => e.card.id === card.id && e.card.owner.id === owner.userId && e.card.last4 === card.last4)).toBe(true);
      }
    } finally {
      await Promise.all(clients.map((c) => c.dispose()));
    }
  });

  it('survives a killed charges process: the router reconnects, says events may have been missed, and events resume', {
    timeout: 180_000,
  }, async () => {
    const { chargeId, owner, merchant } = await chargeThrough(1);
    const client = wsClient(routerWs(0), owner.bearer);
    const other = wsClient(routerWs(1), owner.bearer);
    try {
      const watch: Collected = watchCharge(client, chargeId);
      const witness: Collected = watchCharge(other, chargeId);
      await until(() => watch.events.length === 1 && witness.events.length === 1, 'first events', 20_000);

      // Router 1's upstream (charges process 1) dies without a goodbye.
      await stop(charges[0]?.child as ChildProcess, 'SIGKILL');
      // Meanwhile charges process 2 settles the charge: router 1 cannot hear it.
      await until(() => statuses(witness).includes('SETTLED'), 'SETTLED on router 2', 30_000);
      expect(statuses(watch)).toEqual(['AUTHORIZED']);

      await startCharges(0);
      // The first payload after the reconnect says events may have been missed. (Under load the
      // settlement can race the kill, so router 1 may also have delivered SETTLED just before
      // it: the flag is promised on the reconnect, not on a particular status.)
      await until(
        () => watch.payloads.some((p) => p.extensions?.missedEvents),
        () =>
          `a missedEvents payload after the reconnect; payloads: ${JSON.stringify(watch.payloads)}; errors: ${JSON.stringify(watch.errors)}; completed: ${watch.completed}; client closes: ${JSON.stringify(client.closeEvents)}\nrouter 1 log:\n${routerLogTail(0)}\ncharges 1 log:\n${charges[0]?.output().split('\n').slice(-40).join('\n')}`,
        // Reconnect backoff reaches 10 s while charges is down; a loaded machine adds start-up time.
        60_000,
      );
      const flagged = watch.payloads.find((p) => p.extensions?.missedEvents);
      expect(flagged?.extensions, `payloads: ${JSON.stringify(watch.payloads)}`).toEqual({ missedEvents: true });
      expect((flagged?.data as { chargeUpdated?: { status: string } })?.chargeUpdated?.status).toBe('SETTLED');

      // Events flow again on the new upstream connection.
      await refundThrough(1, merchant.bearer, chargeId, 500);
      await until(() => statuses(watch).includes('PARTIALLY_REFUNDED'), 'PARTIALLY_REFUNDED after the reconnect', 20_000);
      await refundThrough(1, merchant.bearer, chargeId);
      await until(() => statuses(watch).includes('REFUNDED'), 'REFUNDED after the reconnect', 20_000);
      // Consecutive repeats collapse: a SETTLED delivered before the kill and again, flagged, after it.
      const changes = statuses(watch).filter((status, i, all) => status !== all[i - 1]);
      expect(changes).toEqual(['AUTHORIZED', 'SETTLED', 'PARTIALLY_REFUNDED', 'REFUNDED']);
      expect(watch.payloads.filter((p) => p.extensions?.missedEvents)).toHaveLength(1);
      expect(watch.errors).toEqual([]);
    } finally {
      await Promise.all([client.dispose(), other.dispose()]);
    }
  });
});
