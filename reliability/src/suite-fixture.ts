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
