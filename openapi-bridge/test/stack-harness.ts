import { randomBytes } from 'node:crypto';
import { resolve } from 'node:path';
import { type AuthService, authConfigSchema, createAuthService, seedUser } from '@ghostpay/auth';
import { cardsConfigSchema, createCardsService } from '@ghostpay/cards';
import { type ChargesService, chargesConfigSchema, createChargesService } from '@ghostpay/charges';
import { createJwtVerifier, createLogger, createSecretsProvider, envNameForSecret, type Role } from '@ghostpay/platform';
import { composeFromConfig, createRouter, type Router, routerConfigSchema } from '@ghostpay/router';
import { freshDatabase, type TestDatabase } from '@ghostpay/test-support';
import { type Bridge, bridgeConfigSchema, createBridge, manifestPath } from '../src/index.ts';

export const repoRoot = resolve(import.meta.dirname, '../..');
export const silentLogger = createLogger({ service: 'bridge-test', level: 'silent' });

export interface Stack {
  database: TestDatabase;
  auth: AuthService;
  charges: ChargesService;
  router: Router;
  bridge: Bridge;
  bridgeUrl: string;
  /** A user with an API key, made the way the dev stack seeds them. */
  seed(role: Role): Promise<{ userId: string; apiKey: string; apiKeyId: string }>;
  /** Per-API-key limits the router reads (the key's `rateLimitPerMinute`). */
  rateLimits: Map<string, number>;
  close(): Promise<void>;
}

/**
 * The real thing, in-process on loopback port 0: auth (token exchange, JWKS), cards and
 * charges on one fresh PostgreSQL database, the router in safelist mode trusting only the
 * bridge's committed manifest, and the bridge in front.
 */
export async function startStack(): Promise<Stack> {
  const database = await freshDatabase({ poolSize: 20 });
  const closers: (() => Promise<void>)[] = [() => database.close()];
  const close = async () => {
    for (const fn of closers.reverse()) await fn().catch(() => {});
  };
  try {
    const authSecrets = createSecretsProvider({ env: { GHOSTPAY_SECRET_SIGNING_KEK: `k1:${randomBytes(32).toString('base64')}` } });
    const auth = createAuthService({
      database,
      secrets: authSecrets,
      config: authConfigSchema.parse({ NODE_ENV: 'test', LOG_LEVEL: 'silent' }),
      logger: silentLogger,
    });
    const authUrl = await auth.start(0);
    closers.push(async () => {
      await auth.close();
      authSecrets.close();
    });
    const verifier = createJwtVerifier({ jwksUrl: `${authUrl}/.well-known/jwks.json`, issuer: 'ghostpay-auth', audience: 'ghostpay-api' });

    const cardSecretsEnv = {
      [envNameForSecret('pan-encryption-keys')]: `k1:${randomBytes(32).toString('base64')}`,
      [envNameForSecret('pan-fingerprint-key')]: randomBytes(32).toString('base64'),
      [envNameForSecret('cvc-key')]: randomBytes(32).toString('base64'),
    };
    const cardSecrets = createSecretsProvider({ env: cardSecretsEnv });
    const cards = createCardsService({
      database,
      secrets: cardSecrets,
      logger: silentLogger,
      config: cardsConfigSchema.parse({ NODE_ENV: 'test', LOG_LEVEL: 'silent' }),
      verifier,
    });
    const cardsUrl = await cards.start(0, '127.0.0.1');
    closers.push(async () => {
      await cards.close();
      cardSecrets.close();
    });

    const charges = createChargesService({
      database,
      logger: silentLogger,
      verifier,
      config: chargesConfigSchema.parse({ NODE_ENV: 'test', LOG_LEVEL: 'silent', SETTLEMENT_ENABLED: 'false' }),
    });
    const chargesUrl = await charges.start(0, '127.0.0.1');
    closers.push(() => charges.close());

    const composed = composeFromConfig(resolve(repoRoot, 'supergraph.yaml'));
    if (!composed.ok) throw new Error(`composition failed:\n${composed.errors.join('\n')}`);
    const rateLimits = new Map<string, number>();
    const router = createRouter({
      config: routerConfigSchema.parse({
        LOG_LEVEL: 'silent',
        SHUTDOWN_TIMEOUT_MS: '200',
        ROUTER_SUBGRAPH_URLS: `auth=${authUrl}/graphql,cards=${cardsUrl}/graphql,charges=${chargesUrl}/graphql`,
        ROUTER_PERSISTED_QUERIES: 'safelist',
        ROUTER_PQ_MANIFESTS: manifestPath,
        ROUTER_PLAYGROUND: 'false',
      }),
      logger: silentLogger,
      verifier,
      supergraphSdl: composed.supergraphSdl,
      apiKeyLookup: async (apiKeyId) => ({ rateLimitPerMinute: rateLimits.get(apiKeyId), revoked: false }),
    });
    const routerUrl = await router.start(0);
    closers.push(() => router.close());

    const bridge = createBridge({
      config: bridgeConfigSchema.parse({ LOG_LEVEL: 'silent', SHUTDOWN_TIMEOUT_MS: '200', ROUTER_URL: `${routerUrl}/graphql` }),
      logger: silentLogger,
    });
    const bridgeUrl = await bridge.start(0);
    closers.push(() => bridge.close());

    let seeded = 0;
    return {
      database,
      auth,
      charges,
      router,
      bridge,
      bridgeUrl,
      rateLimits,
      async seed(role) {
        seeded++;
        const { user, apiKey, apiKeyId } = await seedUser(database, {
          name: `${role} ${seeded}`,
          email: `${role}-${seeded}-${randomBytes(4).toString('hex')}@example.test`,
          role,
        });
        return { userId: user.id, apiKey, apiKeyId };
      },
      close,
    };
  } catch (error) {
    await close();
    throw error;
  }
}
