import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

const base62 = '0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ';
/** Visible part that finds the row: 12 base62 characters (~71 bits), unique in the table. */
const prefixLength = 12;
/** Secret part: 43 base62 characters (~256 bits). */
const secretLength = 43;
const keyPattern = new RegExp(`^gp_([0-9A-Za-z]{${prefixLength}})_([0-9A-Za-z]{${secretLength}})$`);

/** Uniform base62 from crypto.randomBytes: bytes ≥ 248 are rejected so no character is favoured. */
function randomBase62(length: number): string {
  let out = '';
  while (out.length < length) {
    for (const byte of randomBytes(length * 2)) {
      if (byte < 248 && out.length < length) out += base62[byte % 62];
    }
  }
  return out;
}

export interface GeneratedApiKey {
  prefix: string;
  /** The full key `gp_<prefix>_<secret>`: shown to the caller once, never stored. */
  key: string;
  /** What is stored: hex SHA-256 of the full key. */
  hash: string;
}

export function generateApiKey(): GeneratedApiKey {
  const prefix = randomBase62(prefixLength);
  const key = `gp_${prefix}_${randomBase62(secretLength)}`;
  return { prefix, key, hash: hashApiKey(key) };
}

/** The prefix of a well-formed key, or undefined. */
export function parseApiKey(key: string): { prefix: string } | undefined {
  const match = keyPattern.exec(key);
  return match?.[1] ? { prefix: match[1] } : undefined;
}

/**
 * SHA-256 without a pepper: the secret has ~256 bits of entropy, so a stolen hash cannot be
 * brute-forced and a slow or peppered hash would add cost and a secret to manage, not safety.
 */
export function hashApiKey(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex');
}

/** Compares a presented key against a stored hash in constant time. */
export function apiKeyMatches(key: string, storedHash: string): boolean {
  const presented = Buffer.from(hashApiKey(key), 'hex');
  const stored = Buffer.from(storedHash, 'hex');
  return presented.length === stored.length && timingSafeEqual(presented, stored);
}

/** A hash no key produces in practice: compared against when the prefix is unknown, so both paths cost the same. */
export const decoyHash = hashApiKey(`gp_decoy_${randomBytes(32).toString('hex')}`);
