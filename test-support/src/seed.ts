import { randomBytes } from 'node:crypto';
import { cards, type Database, newId, users } from '@ghostpay/db';
import type { Role } from '@ghostpay/platform';

export interface SeededUser {
  id: string;
  role: Role;
  name: string;
  email: string;
}

export interface SeedCardOptions {
  ownerId: string;
  issuerId: string;
  amount?: number;
  currency?: string;
  status?: 'ACTIVE' | 'USED' | 'EXPIRED' | 'CANCELED';
  expiresAt?: Date;
  /** When the card was charged. @default now for a USED card, else null */
  usedAt?: Date | null;
}

/**
 * Seed builders for tests that need rows but not the service that creates them (e.g. the
 * charges tests need cards). Card rows here carry random bytes where the cards service
 * stores a PAN ciphertext: they are charge targets, never revealed.
 */
export function createSeed(db: Database) {
  let counter = 0;
  return {
    async user(role: Role, overrides: Partial<Omit<SeededUser, 'role'>> = {}): Promise<SeededUser> {
      const id = overrides.id ?? newId('usr');
      const n = ++counter;
      const row = {
        id,
        role,
        name: overrides.name ?? `${role} ${n}`,
        email: overrides.email ?? `${role}-${n}-${id.slice(-6)}@example.test`,
      };
      await db.insert(users).values(row);
      return row;
    },
    async card(options: SeedCardOptions) {
      const id = newId('card');
      const expiresAt = options.expiresAt ?? new Date(Date.now() + 3600_000);
      const row = {
        id,
        ownerId: options.ownerId,
        issuerId: options.issuerId,
        panCiphertext: randomBytes(40).toString('base64'),
        panKeyId: 'seed',
        panFingerprint: randomBytes(32).toString('hex'),
        bin: '400000',
        last4: String(1000 + (++counter % 9000)),
        brand: 'VISA',
        expMonth: expiresAt.getUTCMonth() + 1,
        expYear: expiresAt.getUTCFullYear(),
        expiresAt,
        amount: options.amount ?? 10_000,
        currency: options.currency ?? 'USD',
        status: options.status ?? 'ACTIVE',
        // A USED card was charged: the database refuses USED without used_at (migration 0003).
        usedAt: options.usedAt !== undefined ? options.usedAt : options.status === 'USED' ? new Date() : null,
      } as const;
      await db.insert(cards).values(row);
      return row;
    },
  };
}
