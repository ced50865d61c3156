import { sql } from 'drizzle-orm';
import { check, index, integer, jsonb, pgSchema, text, timestamp, uniqueIndex } from 'drizzle-orm/pg-core';

export const authSchema = pgSchema('auth');

export const users = authSchema.table(
  'users',
  {
    id: text('id').primaryKey(),
    name: text('name').notNull(),
    email: text('email').notNull(),
    role: text('role', { enum: ['admin', 'merchant', 'user'] }).notNull(),
    createdAt: timestamp('created_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow(),
  },
  (t) => [
    uniqueIndex('users_email_lower_key').on(sql`lower(${t.email})`),
    check('users_role_check', sql`${t.role} in ('admin', 'merchant', 'user')`),
    index('users_created_at_id_idx').on(t.createdAt, t.id),
  ],
);

/** API keys: only a hash of the secret is stored; the visible prefix finds the row. */
export const apiKeys = authSchema.table(
  'api_keys',
  {
    id: text('id').primaryKey(),
    userId: text('user_id')
      .notNull()
      .references(() => users.id),
    prefix: text('prefix').notNull(),
    secretHash: text('secret_hash').notNull(),
    rateLimitPerMinute: integer('rate_limit_per_minute'),
    createdAt: timestamp('created_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow(),
    lastUsedAt: timestamp('last_used_at', { withTimezone: true, mode: 'date' }),
    revokedAt: timestamp('revoked_at', { withTimezone: true, mode: 'date' }),
  },
  (t) => [
    uniqueIndex('api_keys_prefix_key').on(t.prefix),
    index('api_keys_user_id_idx').on(t.userId),
    check('api_keys_rate_limit_check', sql`${t.rateLimitPerMinute} is null or ${t.rateLimitPerMinute} > 0`),
  ],
);

/**
 * The signing key ring: next → current → retired → removed. The private key is stored
 * encrypted with a key-encryption key from the secrets provider (`kek_id` names it).
 */
export const signingKeys = authSchema.table(
  'signing_keys',
  {
    kid: text('kid').primaryKey(),
    alg: text('alg').notNull(),
    state: text('state', { enum: ['next', 'current', 'retired', 'removed'] }).notNull(),
    publicJwk: jsonb('public_jwk').notNull(),
    privateKeyCiphertext: text('private_key_ciphertext').notNull(),
    kekId: text('kek_id').notNull(),
    createdAt: timestamp('created_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow(),
    activatedAt: timestamp('activated_at', { withTimezone: true, mode: 'date' }),
    retiredAt: timestamp('retired_at', { withTimezone: true, mode: 'date' }),
    /** A retired key stays published until every token it signed has expired. */
    verifyUntil: timestamp('verify_until', { withTimezone: true, mode: 'date' }),
    removedAt: timestamp('removed_at', { withTimezone: true, mode: 'date' }),
  },
  (t) => [
    check('signing_keys_state_check', sql`${t.state} in ('next', 'current', 'retired', 'removed')`),
    // At most one current key at any moment.
    uniqueIndex('signing_keys_one_current_key').on(t.state).where(sql`${t.state} = 'current'`),
  ],
);
