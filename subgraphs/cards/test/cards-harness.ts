import { randomBytes } from 'node:crypto';
import { cards } from '@ghostpay/db';
import { createSecretsProvider, envNameForSecret, type Role, type SecretsProvider } from '@ghostpay/platform';
import {
  capturingLogger,
  createSeed,
  createTestTokenIssuer,
  freshDatabase,
  type SeededUser,
  type TestDatabase,
} from '@ghostpay/test-support';
import { type CardsConfig, cardsConfigSchema, createCardsService, decryptPan, isLuhnValid, parsePanKeyring } from '../src/index.ts';

export interface GraphQLResult<T = Record<string, unknown>> {
  status: number;
  data?: T | null;
  errors?: {
    message: string;
    path?: string[];
    extensions?: { code?: string; fields?: { field: string; message: string }[] } & Record<string, unknown>;
  }[];
}

/** Random card secrets in the documented formats; a fresh set per harness, never hard-coded. */
export function randomCardSecrets(keyIds: string[] = ['k1']) {
  return {
    'pan-encryption-keys': keyIds.map((id) => `${id}:${randomBytes(32).toString('base64')}`).join(','),
    'pan-fingerprint-key': randomBytes(32).toString('base64'),
    'cvc-key': randomBytes(32).toString('base64'),
  };
}

/**
 * A secrets provider over an env object, plus `set` to change a secret while services run (the
 * provider reads the object on every `get`, as it re-reads a watched file after a rotation).
 */
export function secretsFrom(values: Record<string, string>): { provider: SecretsProvider; set(name: string, value: string): void } {
  const env: Record<string, string> = {};
  const set = (name: string, value: string) => {
    env[envNameForSecret(name)] = value;
  };
  for (const [name, value] of Object.entries(values)) set(name, value);
  return { provider: createSecretsProvider({ env }), set };
}

/**
 * One cards subgraph over real HTTP on port 0, on a fresh PostgreSQL database, with real
 * RS256 tokens and every log line captured (to prove no PAN is ever logged).
 */
export async function startCardsHarness(env: Record<string, string> = {}) {
  const database: TestDatabase = await freshDatabase({ poolSize: 20 });
  const { logger, lines: logLines } = capturingLogger('cards', { level: 'debug' });
  const secretValues = randomCardSecrets();
  const { provider: secrets, set: setSecret } = secretsFrom(secretValues);
  const config: CardsConfig = cardsConfigSchema.parse({ NODE_ENV: 'test', LOG_LEVEL: 'debug', ...env });
  const tokens = await createTestTokenIssuer();
  const service = createCardsService({ database, secrets, logger, config, verifier: tokens.verifier });
  const url = await service.start(0, '127.0.0.1');
  const seed = createSeed(database.db);

  async function request<T = Record<string, unknown>>(
    token: string | undefined,
    query: string,
    variables: Record<string, unknown> = {},
  ): Promise<GraphQLResult<T>> {
    const response = await fetch(`${url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify({ query, variables }),
    });
    return { status: response.status, ...((await response.json()) as Omit<GraphQLResult<T>, 'status'>) };
  }

  /** A seeded user of `role` with a token for it. */
  async function actor(role: Role): Promise<SeededUser & { token: string }> {
    const user = await seed.user(role);
    return { ...user, token: await tokens.mint({ userId: user.id, role }) };
  }

  return {
    database,
    service,
    url,
    config,
    secretValues,
    secrets,
    setSecret,
    logger,
    tokens,
    seed,
    logLines,
    request,
    actor,
    /**
     * Every PAN in the database (decrypted with the current keyring) and every Luhn-valid
     * 13–19 digit run found in the captured log lines: a clean suite returns no findings.
     */
    async panLeaksInLogs(): Promise<{ lines: number; pans: number; findings: string[] }> {
      const keyring = parsePanKeyring(secrets.require('pan-encryption-keys'));
      const rows = await database.db.select().from(cards);
      const pans = new Set<string>();
      // An erased PAN (the retention) is gone from the database: nothing to look for.
      for (const row of rows) {
        if (row.panCiphertext !== null && keyring.keys.has(row.panKeyId))
          pans.add(decryptPan(keyring, row.id, row.panKeyId, row.panCiphertext));
      }
      const findings: string[] = [];
      logLines.forEach((line, index) => {
        if (luhnValidDigitRuns(line, isLuhnValid).length > 0) findings.push(`line ${index}: Luhn-valid digit run`);
        for (const match of line.matchAll(/\d{16}/g)) if (pans.has(match[0])) findings.push(`line ${index}: a PAN`);
      });
      return { lines: logLines.length, pans: pans.size, findings };
    },
    async close() {
      await service.close();
      secrets.close();
      await database.close();
    },
  };
}

export type CardsHarness = Awaited<ReturnType<typeof startCardsHarness>>;

export const cardFields = `id status amount currency currencyExponent bin last4 brand expMonth expYear expiresAt createdAt usedAt canceledAt owner { id } issuedBy { id }`;

export const issueCardMutation = `mutation Issue($input: IssueCardInput!, $key: String) { issueCard(input: $input, idempotencyKey: $key) { ${cardFields} } }`;

export interface IssuedCard {
  id: string;
  status: string;
  amount: number;
  currency: string;
  currencyExponent: number;
  bin: string;
  last4: string;
  brand: string;
  expMonth: number;
  expYear: number;
  expiresAt: string;
  owner: { id: string };
  issuedBy: { id: string };
}

/** Issues a card over HTTP and fails loudly when that does not work. */
export async function issue(h: CardsHarness, token: string, input: Record<string, unknown>, key?: string): Promise<IssuedCard> {
  const result = await h.request<{ issueCard: IssuedCard }>(token, issueCardMutation, { input, key });
  if (!result.data?.issueCard) throw new Error(`issueCard failed: ${JSON.stringify(result.errors)}`);
  return result.data.issueCard;
}

/** Every 13–19 digit run in `text` that passes Luhn: what a leaked PAN looks like. */
export function luhnValidDigitRuns(text: string, isLuhnValid: (s: string) => boolean): string[] {
  const found: string[] = [];
  for (const match of text.matchAll(/\d{13,}/g)) {
    const run = match[0];
    // Any window of 13–19 digits inside a longer run could be a PAN too.
    for (let len = 13; len <= Math.min(19, run.length); len++) {
      for (let i = 0; i + len <= run.length; i++) {
        const candidate = run.slice(i, i + len);
        if (isLuhnValid(candidate)) found.push(candidate);
      }
    }
  }
  return found;
}
