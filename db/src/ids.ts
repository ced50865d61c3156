import { randomBytes } from 'node:crypto';

const alphabet = '0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ';

export type IdPrefix = 'usr' | 'key' | 'card' | 'ch' | 're' | 'rev' | 'req';

/**
 * Opaque prefixed ids (`card_4fQ...`): 22 base62 characters (~131 bits) of randomness,
 * so ids are unguessable and leak neither counts nor times.
 */
export function newId(prefix: IdPrefix): string {
  const bytes = randomBytes(22);
  let out = '';
  for (const byte of bytes) out += alphabet[byte % 62];
  return `${prefix}_${out}`;
}

export function hasPrefix(id: string, prefix: IdPrefix): boolean {
  return new RegExp(`^${prefix}_[0-9A-Za-z]{22}$`).test(id);
}
