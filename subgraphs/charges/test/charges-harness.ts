import { createLogger } from '@ghostpay/platform';
import {
  createSeed,
  createTestTokenIssuer,
  freshDatabase,
  type SeededUser,
  type TestDatabase,
  type TestTokenIssuer,
} from '@ghostpay/test-support';
import { afterAll, beforeAll, expect } from 'vitest';
import WebSocket from 'ws';
import { type ChargesService, chargesConfigSchema, checkLedger, createChargesService } from '../src/index.ts';

export const chargeFields =
  'id status declineCode amount currency refundedAmount description createdAt authorizedAt settledAt card { id } merchant { id }';

export interface GraphQLResult<T = Record<string, unknown>> {
  data?: T | null;
  errors?: Array<{ message: string; extensions?: { code?: string } }>;
}

export interface Harness {
  database: TestDatabase;
  service: ChargesService;
  url: string;
  tokens: TestTokenIssuer;
  seed: ReturnType<typeof createSeed>;
  gql<T = Record<string, unknown>>(query: string, variables: Record<string, unknown>, bearer: string): Promise<GraphQLResult<T>>;
  /** Asserts the ledger check finds nothing. */
  expectLedgerClean(): Promise<void>;
  close(): Promise<void>;
}

/** Polls `condition` until it holds, failing with `what` after `timeoutMs` instead of hanging. */
export async function until(condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** What {@link merchantDatabase} provides; read it inside tests and hooks, after its `beforeAll`. */
export interface MerchantDatabase {
  database: TestDatabase;
  seed: ReturnType<typeof createSeed>;
  merchantId: string;
  holderId: string;
  /** The merchant as the caller of `authorizeCharge`/`refundCharge`. */
  principal(): { userId: string; role: 'merchant'; scopes: string[]; apiKeyId: string; tokenId: string; expiresAt: number };
}

/**
 * For tests that call the charge functions directly: a fresh PostgreSQL database with one
 * merchant and one card holder, created in a `beforeAll` and closed in an `afterAll` of the
 * calling suite.
 */
export function merchantDatabase(): MerchantDatabase {
  // database and seed are set by the beforeAll below, before any test reads them.
  const fixture = {
    merchantId: '',
    holderId: '',
    principal: () => ({ userId: fixture.merchantId, role: 'merchant' as const, scopes: [], apiKeyId: 'k', tokenId: 't', expiresAt: 0 }),
  } as Partial<MerchantDatabase> as MerchantDatabase;
  beforeAll(async () => {
    fixture.database = await freshDatabase();
    fixture.seed = createSeed(fixture.database.db);
    fixture.merchantId = (await fixture.seed.user('merchant')).id;
    fixture.holderId = (await fixture.seed.user('user')).id;
  });
  afterAll(async () => fixture.database?.close());
  return fixture;
}

/** A charges service on port 0 over a fresh PostgreSQL database, with real RS256 tokens. */
export async function startHarness(env: Record<string, string> = {}): Promise<Harness> {
  const database = await freshDatabase({ poolSize: 20 });
  const tokens = await createTestTokenIssuer();
  const config = chargesConfigSchema.parse({ LOG_LEVEL: 'silent', SETTLEMENT_ENABLED: 'false', ...env });
  const service = createChargesService({
    database,
    logger: createLogger({ service: 'charges', level: 'silent' }),
    verifier: tokens.verifier,
    config,
  });
  const url = await service.start(0);
  return {
    database,
    service,
    url,
    tokens,
    seed: createSeed(database.db),
    async gql(query, variables, bearer) {
      const response = await fetch(`${url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: bearer },
        body: JSON.stringify({ query, variables }),
      });
      return (await response.json()) as GraphQLResult<never>;
    },
    async expectLedgerClean() {
      expect(await checkLedger(database)).toEqual([]);
    },
    async close() {
      await service.close();
      await database.close();
    },
  };
}

/** What {@link withChargesService} has started: a {@link Harness} plus its parties, set once the suite's `beforeAll` has run. */
export interface ChargesServiceFixture extends Harness {
  merchant: SeededUser;
  holder: SeededUser;
  /** `Bearer …` of `merchant`. */
  bearer: string;
  /** {@link authorizedCharge} of a card `holder` holds and `merchant` issued, charged as `merchant`. */
  authorized(key: string): Promise<ChargeJson>;
}

/**
 * A charges service ({@link startHarness} with `env`), a merchant, a card holder and the
 * merchant's bearer token, started in `beforeAll` and closed in `afterAll` of the enclosing
 * describe (after the hooks registered later in it: vitest runs `afterAll` hooks in reverse).
 */
export function withChargesService(env: Record<string, string> = {}): ChargesServiceFixture {
  const fixture = {} as ChargesServiceFixture;
  beforeAll(async () => {
    Object.assign(fixture, await startHarness(env));
    fixture.merchant = await fixture.seed.user('merchant');
    fixture.holder = await fixture.seed.user('user');
    fixture.bearer = await fixture.tokens.bearer({ userId: fixture.merchant.id, role: 'merchant' });
    fixture.authorized = (key) =>
      authorizedCharge(fixture, { merchantId: fixture.merchant.id, holderId: fixture.holder.id, bearer: fixture.bearer }, key);
  });
  afterAll(async () => fixture.close?.());
  return fixture;
}

interface SocketMessage {
  id?: string;
  type: string;
  payload?: unknown;
}

/** A raw graphql-transport-ws socket to the service at `url`, recording what it receives and how it closed. */
export async function rawSocket(url: string, options: { autoPong?: boolean } = {}) {
  const socket = new WebSocket(`${url.replace(/^http/, 'ws')}/graphql`, 'graphql-transport-ws', { autoPong: options.autoPong ?? true });
  const messages: SocketMessage[] = [];
  const state = { closed: undefined as { code: number; reason: string } | undefined, pings: 0 };
  socket.on('message', (data) => messages.push(JSON.parse(String(data)) as SocketMessage));
  socket.on('ping', () => state.pings++);
  socket.on('close', (code, reason) => {
    state.closed = { code, reason: String(reason) };
  });
  await new Promise((resolve, reject) => socket.once('open', resolve).once('error', reject));
  const send = (message: unknown) => socket.send(JSON.stringify(message));
  return {
    socket,
    messages,
    state,
    send,
    async init(authorization: string) {
      send({ type: 'connection_init', payload: { authorization } });
      await until(() => messages.some((m) => m.type === 'connection_ack') || state.closed !== undefined, 'the ack or the close');
    },
    watch(id: string, chargeId: string) {
      send({ id, type: 'subscribe', payload: { query: watchQuery, variables: { id: chargeId } } });
    },
    statusesOf: (id: string) =>
      messages
        .filter((m) => m.id === id && m.type === 'next')
        .map((m) => (m.payload as { data?: { chargeUpdated?: { status: string } } }).data?.chargeUpdated?.status),
    of: (id: string) => messages.filter((m) => m.id === id),
  };
}

export const watchQuery = 'subscription ($id: ID!) { chargeUpdated(id: $id) { status } }';

export const createChargeMutation = `mutation ($input: CreateChargeInput!, $key: String!) {
  createCharge(input: $input, idempotencyKey: $key) { ${chargeFields} }
}`;

export const refundChargeMutation = `mutation ($id: ID!, $amount: Int, $key: String!) {
  refundCharge(id: $id, amount: $amount, idempotencyKey: $key) { ${chargeFields} }
}`;

/**
 * Seeds a 1,000-cent card of `holderId` issued by `merchantId` and charges all of it through
 * createCharge as `bearer` (the merchant) under idempotency key `key`; throws with the errors if
 * the mutation is refused.
 */
export async function authorizedCharge(
  h: Harness,
  parties: { merchantId: string; holderId: string; bearer: string },
  key: string,
): Promise<ChargeJson> {
  const card = await h.seed.card({ ownerId: parties.holderId, issuerId: parties.merchantId, amount: 1_000 });
  const result = await h.gql<{ createCharge: ChargeJson }>(
    createChargeMutation,
    { input: { cardId: card.id, amount: 1_000, currency: 'USD' }, key },
    parties.bearer,
  );
  if (!result.data) throw new Error(JSON.stringify(result.errors));
  return result.data.createCharge;
}

export interface ChargeJson {
  id: string;
  status: string;
  declineCode: string | null;
  amount: number;
  currency: string;
  refundedAmount: number;
  description: string | null;
  createdAt: string;
  authorizedAt: string | null;
  settledAt: string | null;
  card: { id: string };
  merchant: { id: string };
}
