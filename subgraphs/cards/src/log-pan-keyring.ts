import type { Logger, SecretsProvider } from '@ghostpay/platform';
import { panSecretNames, parsePanKeyring } from './pan-crypto.ts';

/**
 * Logs which PAN keys this process holds — the active key id and every key id, never key
 * material — once now (`PAN keyring loaded`) and again each time the watched secret changes
 * (`PAN keyring changed`). A rotation is rolled out replica by replica as the secret file
 * reaches each pod; these lines are how an operator sees that every replica has a new key
 * before making it active (README, "Rotating the PAN encryption key"). A missing or malformed
 * keyring is a warning naming the secret (parse errors never echo a key). Returns the
 * unsubscribe.
 */
export function logPanKeyring(secrets: SecretsProvider, logger: Pick<Logger, 'info' | 'warn'>): () => void {
  const report = (value: string | undefined, message: string) => {
    // Under `secretName`: the logger censors the values of `secret` keys.
    const secretName = panSecretNames.encryptionKeys;
    if (!value) {
      logger.warn({ secretName }, 'PAN keyring is missing: issuing and revealing cards fail until it is back');
      return;
    }
    try {
      const keyring = parsePanKeyring(value);
      logger.info({ secretName, activeKeyId: keyring.activeKeyId, keyIds: [...keyring.keys.keys()] }, message);
    } catch (error) {
      logger.warn(
        { secretName, reason: (error as Error).message },
        'PAN keyring is malformed: issuing and revealing cards fail until it is fixed',
      );
    }
  };
  report(secrets.get(panSecretNames.encryptionKeys), 'PAN keyring loaded');
  const unsubscribe = secrets.onChange(panSecretNames.encryptionKeys, (value) => report(value, 'PAN keyring changed'));
  return () => {
    unsubscribe();
  };
}
