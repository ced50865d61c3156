import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import type { SecretsProvider } from '@ghostpay/platform';

/** The secret holding the key-encryption key(s) for signing private keys. */
export const signingKekSecret = 'signing-kek';

export interface KeyEncryptionKey {
  id: string;
  key: Buffer;
}

export interface KekRing {
  /** Encrypts new private keys. */
  primary: KeyEncryptionKey;
  byId: Map<string, KeyEncryptionKey>;
}

/**
 * Parses the `signing-kek` secret: either one base64 32-byte key (its id is `default`) or a
 * keyring `id:base64[,id:base64...]` whose first entry encrypts and all entries decrypt, so
 * the KEK can rotate without re-encrypting stored keys at once. Errors never echo key material.
 */
export function parseKekRing(value: string): KekRing {
  const entries = value.includes(':') ? value.split(',') : [`default:${value}`];
  const byId = new Map<string, KeyEncryptionKey>();
  let primary: KeyEncryptionKey | undefined;
  for (const [index, entry] of entries.entries()) {
    const separator = entry.indexOf(':');
    const id = entry.slice(0, separator).trim();
    const key = Buffer.from(entry.slice(separator + 1).trim(), 'base64');
    if (!/^[A-Za-z0-9._-]{1,64}$/.test(id)) throw new Error(`${signingKekSecret}: entry ${index + 1} has an invalid id`);
    if (key.length !== 32) throw new Error(`${signingKekSecret}: key "${id}" must be 32 bytes in base64`);
    if (byId.has(id)) throw new Error(`${signingKekSecret}: key id "${id}" appears twice`);
    const kek = { id, key };
    byId.set(id, kek);
    primary ??= kek;
  }
  if (!primary) throw new Error(`${signingKekSecret}: no key`);
  return { primary, byId };
}

/** Reads the KEK ring from the secrets provider on each use, so a reloaded secret file takes effect. */
export function createKeyEncryption(secrets: SecretsProvider) {
  let cached: { value: string; ring: KekRing } | undefined;
  const ring = (): KekRing => {
    const value = secrets.require(signingKekSecret);
    if (cached?.value !== value) cached = { value, ring: parseKekRing(value) };
    return cached.ring;
  };
  // The kid is authenticated data: a ciphertext copied onto another row does not decrypt.
  const aad = (kid: string) => Buffer.from(`ghostpay-signing-key:${kid}`, 'utf8');
  return {
    /** Checks the secret parses; throws a readable error otherwise. */
    check(): void {
      ring();
    },
    encrypt(kid: string, plaintext: string): { ciphertext: string; kekId: string } {
      const { primary } = ring();
      const iv = randomBytes(12);
      const cipher = createCipheriv('aes-256-gcm', primary.key, iv, { authTagLength: 16 });
      cipher.setAAD(aad(kid));
      const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
      const tag = cipher.getAuthTag();
      return {
        ciphertext: ['v1', iv, tag, body].map((part) => (typeof part === 'string' ? part : part.toString('base64'))).join('.'),
        kekId: primary.id,
      };
    },
    decrypt(kid: string, kekId: string, ciphertext: string): string {
      const kek = ring().byId.get(kekId);
      if (!kek) throw new Error(`signing key ${kid} is encrypted with KEK "${kekId}", which ${signingKekSecret} no longer holds`);
      const [version, iv, tag, body] = ciphertext.split('.');
      if (version !== 'v1' || !iv || !tag || !body) throw new Error(`signing key ${kid} has an unreadable ciphertext`);
      const authTag = Buffer.from(tag, 'base64');
      // GCM accepts tags down to 4 bytes unless told the length: a truncated tag must not verify.
      if (authTag.length !== 16) throw new Error(`signing key ${kid} has an unreadable ciphertext`);
      const decipher = createDecipheriv('aes-256-gcm', kek.key, Buffer.from(iv, 'base64'), { authTagLength: 16 });
      decipher.setAAD(aad(kid));
      decipher.setAuthTag(authTag);
      return Buffer.concat([decipher.update(Buffer.from(body, 'base64')), decipher.final()]).toString('utf8');
    },
  };
}

export type KeyEncryption = ReturnType<typeof createKeyEncryption>;
