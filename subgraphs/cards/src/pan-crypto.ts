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
 * The layouts of `pan_ciphertext`, told apart by a prefix that version 1 lacks:
 *
 * - 1: base64(iv | ciphertext | tag), the card id as additional authenticated data. No prefix:
 *   every row written before versions existed, and what this release still writes.
 * - 2: `v2:` + the same layout, with `v2:` + the card id as additional authenticated data, so the
 *   version cannot be changed or stripped without failing authentication (a version 2 ciphertext
 *   without its prefix is read as version 1 and fails). The same algorithm: version 2 is the
 *   versioned envelope a future algorithm (a version 3) needs, with no migration of stored rows.
 *
 * base64 has no `:`, so a prefix `v<digits>:` can never be the start of a version 1 row. A prefix
 * of a version this code does not know is refused, never read as another.
 */
export type PanCiphertextVersion = 1 | 2;

/**
 * The version `encryptPan` writes (issuing, re-encrypting). Still 1: every replica must read
 * version 2 before any replica writes it (a rolling deploy runs old and new replicas side by side,
 * and an old one could not reveal a card a new one issued), so the release that writes 2 is the
 * one after this one. See the README.
 */
export const panCiphertextWriteVersion: PanCiphertextVersion = 1;

/** The version of a stored ciphertext; undefined for a `v…:` prefix this code does not know. */
export function panCiphertextVersion(ciphertext: string): PanCiphertextVersion | undefined {
  const prefix = /^v([^:]*):/.exec(ciphertext);
  if (!prefix) return 1;
  return prefix[1] === '2' ? 2 : undefined;
}

function authenticatedData(version: PanCiphertextVersion, cardId: string): Buffer {
  return Buffer.from(version === 1 ? cardId : `v${version}:${cardId}`, 'utf8');
}

/**
 * Encrypts a PAN with the active key: AES-256-GCM with a fresh random IV per call, so one PAN
 * encrypts to a different ciphertext each time, in the layout of `version` (see
 * `PanCiphertextVersion`; default `panCiphertextWriteVersion`). The card id is bound in as
 * additional authenticated data: a ciphertext copied onto another row does not decrypt.
 */
export function encryptPan(
  keyring: PanKeyring,
  cardId: string,
  pan: string,
  version: PanCiphertextVersion = panCiphertextWriteVersion,
): { ciphertext: string; keyId: string } {
  const key = keyring.keys.get(keyring.activeKeyId)!;
  const iv = randomBytes(ivBytes);
  const cipher = createCipheriv('aes-256-gcm', key, iv, { authTagLength: tagBytes });
  cipher.setAAD(authenticatedData(version, cardId));
  const body = Buffer.concat([cipher.update(pan, 'utf8'), cipher.final()]);
  const encoded = Buffer.concat([iv, body, cipher.getAuthTag()]).toString('base64');
  return { ciphertext: version === 1 ? encoded : `v${version}:${encoded}`, keyId: keyring.activeKeyId };
}

/**
 * Decrypts a ciphertext of any known version with the key named by `keyId`; throws (without any
 * card data) when the key is unknown, the version is unknown, or the tag fails.
 */
export function decryptPan(keyring: PanKeyring, cardId: string, keyId: string, ciphertext: string): string {
  const key = keyring.keys.get(keyId);
  if (!key) throw new Error(`PAN key ${keyId} is not in the keyring (card ${cardId})`);
  const version = panCiphertextVersion(ciphertext);
  if (version === undefined) throw new Error(`PAN ciphertext of card ${cardId} has an unknown format`);
  const raw = Buffer.from(version === 1 ? ciphertext : ciphertext.slice(ciphertext.indexOf(':') + 1), 'base64');
  if (raw.length < ivBytes + tagBytes + 1) throw new Error(`PAN ciphertext of card ${cardId} is malformed`);
  const decipher = createDecipheriv('aes-256-gcm', key, raw.subarray(0, ivBytes), { authTagLength: tagBytes });
  decipher.setAAD(authenticatedData(version, cardId));
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
