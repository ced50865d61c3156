import { describe, expect, it } from 'vitest';
import { checkingPrincipals, type JwtVerifier, type Principal, UnauthenticatedError } from '../src/index.ts';

const principal = (apiKeyId: string) => ({ userId: 'usr_1', role: 'merchant', apiKeyId }) as unknown as Principal;
/** A verifier whose tokens are their API key ids (the wrapper only sees what it returns). */
const byKeyId: JwtVerifier = {
  verify: async (token) => principal(token),
  verifyAuthorization: async (header) => (header ? principal(header.replace(/^Bearer /, '')) : undefined),
};

describe('checkingPrincipals', () => {
  const checked = checkingPrincipals(byKeyId, async (p) => {
    if (p.apiKeyId === 'key_revoked') throw new UnauthenticatedError('revoked');
  });

  it('refuses through both methods what the check refuses, and passes the rest unchanged', async () => {
    await expect(checked.verify('key_revoked')).rejects.toThrow('revoked');
    await expect(checked.verifyAuthorization('Bearer key_revoked')).rejects.toBeInstanceOf(UnauthenticatedError);
    await expect(checked.verify('key_ok')).resolves.toMatchObject({ apiKeyId: 'key_ok' });
    await expect(checked.verifyAuthorization('Bearer key_ok')).resolves.toMatchObject({ apiKeyId: 'key_ok' });
  });

  it('has nothing to check without an Authorization header', async () => {
    await expect(checked.verifyAuthorization(undefined)).resolves.toBeUndefined();
  });
});
