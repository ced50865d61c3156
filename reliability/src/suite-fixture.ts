import { randomUUID } from 'node:crypto';
import { checkLedger, type LedgerViolation } from '@ghostpay/charges';
import type { DatabaseHandle } from '@ghostpay/db';
import { type Role, scopesByRole } from '@ghostpay/platform';
import { type CryptoKey, exportJWK, generateKeyPair, type JWK, type JWTPayload, SignJWT } from 'jose';
import pg from 'pg';
import { dataOf, errorCodes, graphql, type Party } from './cluster.ts';

/** The suite's own RS256 key, published beside auth's keys through the cluster's JWKS. */
export interface TestSigningKey {
  kid: string;
  publicJwk: JWK;
  privateKey: CryptoKey;
  publicKey: CryptoKey;
  /** A token shaped exactly like the auth service's; `claims` and `header` override. */
  sign(party: Pick<Party, 'userId' | 'role' | 'apiKeyId'>, claims?: JWTPayload, header?: Record<string, unknown>): Promise<string>;
}

export async function createTestSigningKey(): Promise<TestSigningKey> {
  const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true });
  const kid = `reliability-${randomUUID()}`;
  const publicJwk = { ...(await exportJWK(publicKey)), kid, alg: 'RS256', use: 'sig' };
  return {
    kid,
    publicJwk,
    privateKey,
    publicKey,
    async sign(party, claims = {}, header = {}) {
      const now = Math.floor(Date.now() / 1000);
      return new SignJWT({
        iss: 'ghostpay-auth',
        aud: 'ghostpay-api',
        sub: party.userId,
        role: party.role,
        scope: scopesByRole[party.role as Role].join(' '),
        key_id: party.apiKeyId,
        jti: randomUUID(),
        iat: now,
        exp: now + 600,
        ...claims,
      })
        .setProtectedHeader({ alg: 'RS256', kid, typ: 'JWT', ...header })
        .sign(privateKey);
    },
  };
}

/** Runs the charges ledger check; every scenario ends with it. */
export async function ledgerViolations(database: Pick<DatabaseHandle, 'db'>): Promise<LedgerViolation[]> {
  return checkLedger(database);
}

/**
 * A fingerprint of every row in the cards and charges schemas and of the auth users and API
 * keys counts: equal before and after means nothing was written.
 */
export async function databaseFingerprint(url: string): Promise<Record<string, string>> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const tables = await client.query<{ schema: string; name: string }>(
      "select table_schema as schema, table_name as name from information_schema.tables where table_schema in ('auth', 'cards', 'charges') and table_type = 'BASE TABLE' order by 1, 2",
    );
    const out: Record<string, string> = {};
    for (const { schema, name } of tables.rows) {
      // auth.api_keys carries a last-used timestamp that legitimate reads touch: count rows only there.
      const whole = schema !== 'auth';
      const sql = whole
        ? `select count(*)::text || ':' || coalesce(md5(string_agg(t::text, ',' order by t::text)), '') as f from "${schema}"."${name}" t`
        : `select count(*)::text as f from "${schema}"."${name}"`;
      out[`${schema}.${name}`] = (await client.query<{ f: string }>(sql)).rows[0]?.f ?? '';
    }
    return out;
  } finally {
    await client.end();
  }
}

export const issueCardMutation =
  'mutation ($input: IssueCardInput!, $key: String) { issueCard(input: $input, idempotencyKey: $key) { id status amount currency } }';
export const createChargeMutation =
  'mutation ($input: CreateChargeInput!, $key: String!) { createCharge(input: $input, idempotencyKey: $key) { id status declineCode amount currency } }';

/** Issues a card through the router (merchant or admin token) and returns its id. */
export async function issueCard(graphqlUrl: string, issuer: Party, ownerId: string, amount = 5_000, currency = 'USD'): Promise<string> {
  const result = await graphql(graphqlUrl, issueCardMutation, { input: { userId: ownerId, amount, currency } }, issuer.token);
  const id = dataOf<{ issueCard?: { id: string } }>(result)?.issueCard?.id;
  if (!id) throw new Error(`issueCard failed: ${result.status} ${result.text}`);
  return id;
}

/** Issues `count` cards with bounded concurrency. */
export async function issueCards(graphqlUrl: string, issuer: Party, ownerId: string, count: number, amount = 5_000): Promise<string[]> {
  const ids: string[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (next < count) {
        next++;
        ids.push(await issueCard(graphqlUrl, issuer, ownerId, amount));
      }
    }),
  );
  return ids;
}

export interface ChargeOutcome {
  ok: boolean;
  status?: string;
  id?: string;
  codes: string[];
  httpStatus?: number;
  transportError?: string;
}

/** One createCharge through the router; never throws. */
export async function charge(graphqlUrl: string, merchant: Party, cardId: string, key: string, amount = 1_000): Promise<ChargeOutcome> {
  try {
    const result = await graphql(graphqlUrl, createChargeMutation, { input: { cardId, amount, currency: 'USD' }, key }, merchant.token);
    const data = dataOf<{ createCharge?: { id: string; status: string } }>(result)?.createCharge;
    return { ok: !!data, status: data?.status, id: data?.id, codes: errorCodes(result), httpStatus: result.status };
  } catch (error) {
    return { ok: false, codes: [], transportError: (error as Error).message };
  }
}

/**
 * Runs `worker` from `concurrency` loops until `durationMs` has passed or `maxIterations`
 * iterations were started, whichever comes first.
 */
export async function runLoad(
  options: { concurrency: number; durationMs: number; maxIterations: number },
  worker: (i: number) => Promise<void>,
) {
  const deadline = Date.now() + options.durationMs;
  let started = 0;
  await Promise.all(
    Array.from({ length: options.concurrency }, async () => {
      while (Date.now() < deadline && started < options.maxIterations) {
        await worker(started++);
      }
    }),
  );
  return started;
}

export const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms));

/**
 * Waits until the settlement worker has settled every authorized charge, so a before/after
 * fingerprint measures only the requests in between (settlement is a legitimate write).
 */
export async function waitForSettlement(url: string, timeoutMs = 20_000): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const { rows } = await client.query<{ n: number }>("select count(*)::int as n from charges.charges where status = 'AUTHORIZED'");
      if (rows[0]?.n === 0) return;
      if (Date.now() > deadline) throw new Error(`${rows[0]?.n} charges still AUTHORIZED after ${timeoutMs} ms`);
      await sleep(200);
    }
  } finally {
    await client.end();
  }
}

export interface ChargeLoadResult {
  /** Every createCharge request sent, retries included. */
  attempts: number;
  /** Requests that did not come back with a charge (errors, 5xx, transport failures). */
  failedAttempts: number;
  /** Card id → the charge id the API acknowledged for that card's idempotency key. */
  acknowledged: Map<string, string>;
  /** Cards whose key was answered with two different charges, or with a decline (a second charge). */
  mismatches: string[];
  /** Cards never acknowledged before the deadline. */
  unconverged: string[];
  /** Failure codes seen, for the report. */
  failureCodes: Map<string, number>;
}

/**
 * Charges every card once, each under its own idempotency key, from `concurrency` loops; a
 * failed request is retried with the same key (as a client must) until `retryForMs` after the
 * first attempt. Never throws: the caller asserts on the result.
 */
export async function chargeEveryCard(
  graphqlUrl: string,
  merchant: Party,
  cardIds: string[],
  options: { concurrency: number; retryForMs: number; keyPrefix: string; pauseMs?: number; overallDeadlineMs?: number },
): Promise<ChargeLoadResult> {
  const overallDeadline = Date.now() + (options.overallDeadlineMs ?? 90_000);
  const result: ChargeLoadResult = {
    attempts: 0,
    failedAttempts: 0,
    acknowledged: new Map(),
    mismatches: [],
    unconverged: [],
    failureCodes: new Map(),
  };
  let next = 0;
  await Promise.all(
    Array.from({ length: options.concurrency }, async () => {
      while (next < cardIds.length) {
        const cardId = cardIds[next++] as string;
        if (Date.now() > overallDeadline) {
          result.unconverged.push(cardId);
          continue;
        }
        const key = `${options.keyPrefix}-${cardId}`;
        const deadline = Math.min(overallDeadline, Date.now() + options.retryForMs);
        for (;;) {
          const outcome = await charge(graphqlUrl, merchant, cardId, key);
          result.attempts++;
          if (outcome.ok && outcome.id) {
            const previous = result.acknowledged.get(cardId);
            if ((previous && previous !== outcome.id) || outcome.status !== 'AUTHORIZED')
              result.mismatches.push(`${cardId}: ${previous ?? '-'} then ${outcome.id} ${outcome.status}`);
            result.acknowledged.set(cardId, outcome.id);
            break;
          }
          result.failedAttempts++;
          const code = outcome.transportError ? 'TRANSPORT' : (outcome.codes[0] ?? `HTTP_${outcome.httpStatus}`);
          result.failureCodes.set(code, (result.failureCodes.get(code) ?? 0) + 1);
          if (Date.now() > deadline) {
            result.unconverged.push(cardId);
            break;
          }
          await sleep(150);
        }
        if (options.pauseMs) await sleep(options.pauseMs);
      }
    }),
  );
  return result;
}

/**
 * What must hold after any fault: every acknowledged charge exists and is the only successful
 * charge of its card, and no card is USED without its charge (no half-written authorization).
 * Idempotency keys are not checked here: the ledger check's `idempotency_key_unique` rule does.
 * Returns human-readable problems (empty = good).
 */
export async function convergenceProblems(url: string, cardIds: string[], acknowledged: Map<string, string>): Promise<string[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const problems: string[] = [];
    const { rows } = await client.query<{ card_id: string; status: string; successes: number; ids: string[] }>(
      `select c.id as card_id, c.status,
              count(ch.id) filter (where ch.status <> 'DECLINED')::int as successes,
              coalesce(array_agg(ch.id) filter (where ch.status <> 'DECLINED'), '{}') as ids
         from cards.cards c left join charges.charges ch on ch.card_id = c.id
        where c.id = any($1) group by c.id, c.status`,
      [cardIds],
    );
    for (const row of rows) {
      const acked = acknowledged.get(row.card_id);
      if (row.successes > 1) problems.push(`${row.card_id}: ${row.successes} successful charges`);
      if (row.status === 'USED' && row.successes === 0) problems.push(`${row.card_id}: USED without a charge (half-written)`);
      if (row.successes === 1 && row.status !== 'USED') problems.push(`${row.card_id}: charged but ${row.status}`);
      if (acked && !row.ids.includes(acked)) problems.push(`${row.card_id}: acknowledged charge ${acked} lost`);
    }
    return problems;
  } finally {
    await client.end();
  }
}

/** Reads one sample of a Prometheus metric from a /metrics page (sum over matching series). */
export async function metricValue(baseUrl: string, name: string, labels: Record<string, string> = {}): Promise<number> {
  const text = await (await fetch(`${baseUrl}/metrics`)).text();
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (!Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) continue;
    sum += Number(line.split(' ').pop());
  }
  return sum;
}
