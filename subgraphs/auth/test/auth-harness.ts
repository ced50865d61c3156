import { randomBytes } from 'node:crypto';
import type { Role } from '@ghostpay/platform';
import { createLogger, createSecretsProvider, parseConfig, type SecretsProvider } from '@ghostpay/platform';
import { capturingLogger, freshDatabase, type TestDatabase } from '@ghostpay/test-support';
import { type AuthConfig, type AuthService, authConfigSchema, createAuthService, seedUser } from '../src/index.ts';

export interface GraphQLResult<T = Record<string, unknown>> {
  data?: T | null;
  errors?: { message: string; path?: string[]; extensions?: { code?: string; [key: string]: unknown } }[];
}

export interface AuthHarness {
  database: TestDatabase;
  service: AuthService;
  url: string;
  jwksUrl: string;
  config: AuthConfig;
  /** Every log line of every replica, as JSON text (one entry each), when started with `captureLogs` (level debug); else empty. */
  logLines: string[];
  gql<T = Record<string, unknown>>(
    query: string,
    variables?: Record<string, unknown>,
    options?: { token?: string; headers?: Record<string, string> },
  ): Promise<GraphQLResult<T>>;
  /** A user with an API key, made the way the dev stack seeds them. */
  seed(role: Role): Promise<{ userId: string; apiKey: string; apiKeyId: string }>;
  /** createToken over HTTP; throws with the GraphQL errors when it fails. */
  token(apiKey: string): Promise<string>;
  /** Another replica of the service on the same database and KEK. */
  replica(env?: Record<string, string>): Promise<AuthService>;
  close(): Promise<void>;
}

export const randomKek = () => randomBytes(32).toString('base64');

export function testConfig(env: Record<string, string> = {}): AuthConfig {
  const result = parseConfig(authConfigSchema, { NODE_ENV: 'test', LOG_LEVEL: 'silent', ...env });
  if (!result.ok) throw new Error(result.problems.join('\n'));
  return result.config;
}

/** The auth service on a fresh database, listening on 127.0.0.1 port 0. */
export async function startAuth(
  options: { env?: Record<string, string>; kek?: string; database?: TestDatabase; captureLogs?: boolean } = {},
): Promise<AuthHarness> {
  const database = options.database ?? (await freshDatabase());
  const kek = options.kek ?? `k1:${randomKek()}`;
  // One capturing logger shared by every replica: their lines land in one list.
  const captured = options.captureLogs ? capturingLogger('auth', { level: 'debug' }) : undefined;
  const logLines = captured?.lines ?? [];
  const logger = () => captured?.logger ?? createLogger({ service: 'auth', level: 'silent' });
  const started: { service: AuthService; secrets: SecretsProvider }[] = [];
  const build = async (env: Record<string, string> = {}) => {
    const secrets = createSecretsProvider({ env: { GHOSTPAY_SECRET_SIGNING_KEK: env.KEK ?? kek } });
    const config = testConfig({ ...options.env, ...env });
    const service = createAuthService({ database, secrets, config, logger: logger() });
    await service.start(0);
    started.push({ service, secrets });
    return service;
  };
  const service = await build();
  const url = service.url;
  const gql: AuthHarness['gql'] = async (query, variables = {}, { token, headers = {} } = {}) => {
    const response = await fetch(`${url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}), ...headers },
      body: JSON.stringify({ query, variables }),
    });
    return (await response.json()) as GraphQLResult<never>;
  };
  const token = async (apiKey: string) => {
    const result = await gql<{ createToken: { accessToken: string } }>(
      'mutation ($apiKey: String!) { createToken(apiKey: $apiKey) { accessToken } }',
      { apiKey },
    );
    if (!result.data?.createToken) throw new Error(`createToken failed: ${JSON.stringify(result.errors)}`);
    return result.data.createToken.accessToken;
  };
  let seeded = 0;
  return {
    database,
    service,
    url,
    jwksUrl: `${url}/.well-known/jwks.json`,
    config: testConfig(options.env),
    logLines,
    gql,
    token,
    async seed(role) {
      seeded++;
      const { user, apiKey, apiKeyId } = await seedUser(database, {
        name: `${role} ${seeded}`,
        email: `${role}-${seeded}-${randomBytes(4).toString('hex')}@example.test`,
        role,
      });
      return { userId: user.id, apiKey, apiKeyId };
    },
    replica: build,
    async close() {
      for (const { service: s, secrets } of started.reverse()) {
        await s.close();
        secrets.close();
      }
      if (!options.database) await database.close();
    },
  };
}
