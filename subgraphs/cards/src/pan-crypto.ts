import { createCipheriv, createDecipheriv, createHmac, randomBytes } from 'node:crypto';
import type { SecretsProvider } from '@ghostpay/platform';

/** Secret names (files in SECRETS_DIR); formats are in the README. */
export const panSecretNames = {
  encryptionKeys: 'pan-encryption-keys',
  fingerprintKey: 'pan-fingerprint-key',
  cvcKey: 'cvc-key',
} as const;

const ivBytes = 12;
const tagBytes = 16;

/** AES-256-GCM data keys by id; the first one encrypts, any of them decrypts. */
export interface PanKeyring {
  readonly activeKeyId: string;
  readonly keys: ReadonlyMap<string, Buffer>;
}

/**
 * Parses `id:base64key[,id:base64key...]`. The first entry is the active key. Ids are
 * `[A-Za-z0-9_-]{1,64}`; every key must decode to exactly 32 bytes. Errors never echo key material.
 */
export function parsePanKeyring(value: string): PanKeyring {
  const keys = new Map<string, Buffer>();
  let activeKeyId: string | undefined;
  const entries = value
    .split(',')
    .map((e) => e.trim())
    .filter(Boolean);
  if (entries.length === 0) throw new Error(`secret ${panSecretNames.encryptionKeys} is empty`);
  entries.forEach((entry, index) => {
    const colon = entry.indexOf(':');
    const id = colon > 0 ? entry.slice(0, colon) : '';
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(id)) {
      throw new Error(`secret ${panSecretNames.encryptionKeys}: entry ${index + 1} needs the form id:base64key`);
    }
    const key = Buffer.from(entry.slice(colon + 1), 'base64');
    if (key.length !== 32) throw new Error(`secret ${panSecretNames.encryptionKeys}: key ${id} must be 32 bytes (base64)`);
    if (keys.has(id)) throw new Error(`secret ${panSecretNames.encryptionKeys}: key id ${id} appears twice`);
    keys.set(id, key);
    activeKeyId ??= id;
  });
  return { activeKeyId: activeKeyId!, keys };
}

/**
 * Encrypts a PAN with the active key: base64(iv | ciphertext | tag), a fresh random IV per
 * call, so one PAN encrypts to a different ciphertext each time. The card id is bound in as
 * additional authenticated data: a ciphertext copied onto another row does not decrypt.
 */
export function encryptPan(keyring: PanKeyring, cardId: string, pan: string): { ciphertext: string; keyId: string } {
  const key = keyring.keys.get(keyring.activeKeyId)!;
  const iv = randomBytes(ivBytes);
  const cipher = createCipheriv('aes-256-gcm', key, iv, { authTagLength: tagBytes });
  cipher.setAAD(Buffer.from(cardId, 'utf8'));
  const body = Buffer.concat([cipher.update(pan, 'utf8'), cipher.final()]);
  return { ciphertext: Buffer.concat([iv, body, cipher.getAuthTag()]).toString('base64'), keyId: keyring.activeKeyId };
}

/** Decrypts with the key named by `keyId`; throws (without any card data) when it is unknown or the tag fails. */
export function decryptPan(keyring: PanKeyring, cardId: string, keyId: string, ciphertext: string): string {
  const key = keyring.keys.get(keyId);
  if (!key) throw new Error(`PAN key ${keyId} is not in the keyring (card ${cardId})`);
  const raw = Buffer.from(ciphertext, 'base64');
  if (raw.length < ivBytes + tagBytes + 1) throw new Error(`PAN ciphertext of card ${cardId} is malformed`);
  const decipher = createDecipheriv('aes-256-gcm', key, raw.subarray(0, ivBytes), { authTagLength: tagBytes });
  decipher.setAAD(Buffer.from(cardId, 'utf8'));
  decipher.setAuthTag(raw.subarray(raw.length - tagBytes));
  try {
    return Buffer.concat([decipher.update(raw.subarray(ivBytes, raw.length - tagBytes)), decipher.final()]).toString('utf8');
  } catch {
    throw new Error(`PAN ciphertext of card ${cardId} failed authentication under key ${keyId}`);
  }
}

/** HMAC-SHA256 of the PAN (hex): lets a unique index reject duplicates without storing the PAN. */
export function panFingerprint(fingerprintKey: string, pan: string): string {
  return createHmac('sha256', fingerprintKey).update(pan, 'utf8').digest('hex');
}

/**
 * The card verification code, derived as issuers do instead of stored: HMAC-SHA256 over the
 * PAN and expiry under the CVC key, first 4 bytes as an unsigned integer mod 1000, zero-padded
 * (the modulo bias over 2^32 is below 10^-6).
 */
export function deriveCvc(cvcKey: string, pan: string, expMonth: number, expYear: number): string {
  const mac = createHmac('sha256', cvcKey)
    .update(`${pan}|${String(expMonth).padStart(2, '0')}|${expYear}`, 'utf8')
    .digest();
  return String(mac.readUInt32BE(0) % 1000).padStart(3, '0');
}

/** The card secrets, read from the provider on each use so a rotated file takes effect without a restart. */
export interface PanSecrets {
  keyring(): PanKeyring;
  fingerprintKey(): string;
  cvcKey(): string;
}

/**
 * Fewest bytes (UTF-8) accepted for `pan-fingerprint-key` and `cvc-key`: what 32 random bytes
 * in base64 or hex (`openssl rand -base64 32`, 44 characters) easily exceed. The PANs of one BIN
 * are only 10^9 numbers, so whoever can guess the fingerprint key turns the `pan_fingerprint`
 * column of a database copy into every card's PAN with 10^9 HMACs (the CVC key likewise gives
 * every CVC from a revealed PAN): a short or placeholder key is refused, not used.
 */
export const minCardKeyBytes = 32;

function checkedCardKey(name: string, value: string): string {
  if (Buffer.byteLength(value, 'utf8') < minCardKeyBytes) {
    throw new Error(`secret ${name} must be at least ${minCardKeyBytes} bytes of random data (e.g. openssl rand -base64 32)`);
  }
  return value;
}

export function createPanSecrets(secrets: SecretsProvider): PanSecrets {
  // Parsing is cached per raw value: a rotation (new file contents) re-parses once.
  let cached: { raw: string; keyring: PanKeyring } | undefined;
  const fingerprintKey = () => checkedCardKey(panSecretNames.fingerprintKey, secrets.require(panSecretNames.fingerprintKey));
  return {
    keyring() {
      const raw = secrets.require(panSecretNames.encryptionKeys);
      if (cached?.raw !== raw) cached = { raw, keyring: parsePanKeyring(raw) };
      return cached.keyring;
    },
    fingerprintKey,
    cvcKey() {
      const key = checkedCardKey(panSecretNames.cvcKey, secrets.require(panSecretNames.cvcKey));
      // One key, one purpose: a copy of the fingerprint key (the more widely used of the two) is refused.
      if (key === secrets.get(panSecretNames.fingerprintKey)) {
        throw new Error(`secret ${panSecretNames.cvcKey} must differ from ${panSecretNames.fingerprintKey}`);
      }
      return key;
    },
  };
}
