import { createDatabase, migrate, signingKeys } from '@ghostpay/db';
import { createJwtVerifier, createLogger, createSecretsProvider } from '@ghostpay/platform';
import { sql } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { createAuthService, seedUser } from '../src/index.ts';
import { randomKek, testConfig } from './auth-harness.ts';

describe('on the embedded PGlite database the dev stack uses', () => {
  it('seeds a user, mints a token, rotates and serves the JWKS', { timeout: 120_000 }, async () => {
    const database = await createDatabase();
    const secrets = createSecretsProvider({ env: { GHOSTPAY_SECRET_SIGNING_KEK: `dev1:${randomKek()}` } });
    const service = createAuthService({
      database,
      secrets,
      config: testConfig(),
      logger: createLogger({ service: 'auth', level: 'silent' }),
    });
    try {
      await migrate(database);
      const url = await service.start(0);
      const { apiKey } = await seedUser(database, { name: 'Dev Admin', email: 'admin@ghostpay.local', role: 'admin' });
      const mint = async () => {
        const response = await fetch(`${url}/graphql`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ query: 'mutation ($k: String!) { createToken(apiKey: $k) { accessToken } }', variables: { k: apiKey } }),
        });
        return ((await response.json()) as { data: { createToken: { accessToken: string } } }).data.createToken.accessToken;
      };
      const before = await mint();
      // As if the ring were an hour old: two rotations at once, the second refused as too soon.
      await database.db.update(signingKeys).set({
        createdAt: sql`${signingKeys.createdAt} - interval '1 hour'`,
        activatedAt: sql`${signingKeys.activatedAt} - interval '1 hour'`,
      });
      const rotations = await Promise.allSettled([service.keyRing.rotate(), service.keyRing.rotate()]);
      expect(rotations.map((rotation) => rotation.status).sort()).toEqual(['fulfilled', 'rejected']);
      const verifier = createJwtVerifier({ jwksUrl: `${url}/.well-known/jwks.json`, issuer: 'ghostpay-auth', audience: 'ghostpay-api' });
      expect((await verifier.verify(before)).role).toBe('admin');
      expect((await verifier.verify(await mint())).role).toBe('admin');
    } finally {
      await service.close();
      secrets.close();
      await database.close();
    }
  });
});
