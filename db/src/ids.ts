import { randomBytes } from 'node:crypto';

const alphabet = '0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ';

export type IdPrefix = 'usr' | 'key' | 'card' | 'ch' | 're' | 'rev' | 'req';

/** The largest multiple of 62 that fits a byte: bytes at or above it are dropped, not folded. */
const unbiasedBelow = 62 * 4;

/**
 * Opaque prefixed ids (`card_4fQ...`): 22 base62 characters (~131 bits) of randomness,
 * so ids are unguessable and leak neither counts nor times. Every character is equally likely:
 * a random byte is used only below 248 (`byte % 62` over all 256 made 0–7 likelier), so about
 * one byte in 32 is drawn again.
 */
export function newId(prefix: IdPrefix): string {
  let out = '';
  while (out.length < 22) {
    for (const byte of randomBytes(24)) {
      if (byte < unbiasedBelow && out.length < 22) out += alphabet[byte % 62];
    }
  }
  return `${prefix}_${out}`;
}

export function hasPrefix(id: string, prefix: IdPrefix): boolean {
  return new RegExp(`^${prefix}_[0-9A-Za-z]{22}$`).test(id);
}
