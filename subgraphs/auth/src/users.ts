import { apiKeys, type ByIds, type Database, type DatabaseHandle, newId, preparedByIds, type Transaction, users } from '@ghostpay/db';
import { BadUserInputError, ForbiddenError, type Role } from '@ghostpay/platform';
import { and, asc, count, eq, isNull, sql } from 'drizzle-orm';
import { generateApiKey } from './api-key-format.ts';

export type UserRow = typeof users.$inferSelect;
/** An API key row without its hash: what resolvers and callers may see. */
export type ApiKeyRow = Omit<typeof apiKeys.$inferSelect, 'secretHash'>;

export const apiKeyColumns = {
  id: apiKeys.id,
  userId: apiKeys.userId,
  prefix: apiKeys.prefix,
  rateLimitPerMinute: apiKeys.rateLimitPerMinute,
  createdAt: apiKeys.createdAt,
  lastUsedAt: apiKeys.lastUsedAt,
  revokedAt: apiKeys.revokedAt,
};

export interface NewUser {
  name: string;
  email: string;
  role: Role;
  /** Rate limit of the first API key; null = the router's default. */
  rateLimitPerMinute?: number | null;
}

/** A freshly created key: the row plus the full key, which exists only in this value. */
export interface IssuedApiKey {
  apiKey: ApiKeyRow;
  secret: string;
}

function isUniqueViolation(error: unknown, constraint: string): boolean {
  for (let cause: unknown = error; cause && typeof cause === 'object'; cause = (cause as { cause?: unknown }).cause) {
    const pgError = cause as { code?: string; constraint?: string };
    if (pgError.code === '23505' && pgError.constraint === constraint) return true;
  }
  return false;
}

async function insertApiKey(tx: Transaction | Database, userId: string, rateLimitPerMinute: number | null): Promise<IssuedApiKey> {
  const generated = generateApiKey();
  const [apiKey] = await tx
    .insert(apiKeys)
    .values({ id: newId('key'), userId, prefix: generated.prefix, secretHash: generated.hash, rateLimitPerMinute })
    .returning(apiKeyColumns);
  return { apiKey: apiKey!, secret: generated.key };
}

/** Creates a user and its first API key in one transaction. A taken email is BAD_USER_INPUT. */
export async function createUserWithApiKey(db: Database, input: NewUser, field = 'input.email'): Promise<{ user: UserRow } & IssuedApiKey> {
  try {
    return await db.transaction(async (tx) => {
      const [user] = await tx
        .insert(users)
        .values({ id: newId('usr'), name: input.name, email: input.email, role: input.role })
        .returning();
      const issued = await insertApiKey(tx, user!.id, input.rateLimitPerMinute ?? null);
      return { user: user!, ...issued };
    });
  } catch (error) {
    if (isUniqueViolation(error, 'users_email_lower_key')) throw new BadUserInputError([{ field, message: 'is already in use' }]);
    throw error;
  }
}

/**
 * Creates a user with an API key, for the dev stack's first start and for tests. Returns the
 * full key once (`apiKey`, `gp_<prefix>_<secret>`): only its hash is stored.
 */
export async function seedUser(database: DatabaseHandle, input: NewUser): Promise<{ user: UserRow; apiKey: string; apiKeyId: string }> {
  const { user, apiKey, secret } = await createUserWithApiKey(database.db, input, 'email');
  return { user, apiKey: secret, apiKeyId: apiKey.id };
}

/**
 * Creates an API key for a user. With `maxActiveKeys`, refuses (FORBIDDEN) when the user already
 * has that many unrevoked keys: each key is its own rate-limit bucket, so unlimited keys would be
 * an unlimited quota. The user's row is locked first, so concurrent creations for one user are
 * counted one after another and never pass the cap together.
 */
export async function createApiKeyFor(
  db: Database,
  userId: string,
  rateLimitPerMinute: number | null,
  maxActiveKeys?: number,
): Promise<IssuedApiKey> {
  if (maxActiveKeys === undefined) return insertApiKey(db, userId, rateLimitPerMinute);
  return db.transaction(async (tx) => {
    // `for no key update`: serialises creations for this user without blocking the foreign-key
    // checks of rows that reference the user (cards, charges) meanwhile.
    await tx.select({ id: users.id }).from(users).where(eq(users.id, userId)).for('no key update');
    const [active] = await tx
      .select({ keys: count() })
      .from(apiKeys)
      .where(and(eq(apiKeys.userId, userId), isNull(apiKeys.revokedAt)));
    if ((active?.keys ?? 0) >= maxActiveKeys) {
      throw new ForbiddenError(`A user may hold at most ${maxActiveKeys} active API keys: revoke one first`);
    }
    return insertApiKey(tx, userId, rateLimitPerMinute);
  });
}

/** The loaders' lookups, built into SQL once per database (`preparedByIds`). */
export interface UserLookups {
  usersByIds: ByIds<UserRow>;
  apiKeysByIds: ByIds<ApiKeyRow>;
  /** Oldest first. */
  apiKeysByUserIds: ByIds<ApiKeyRow>;
}

export function createUserLookups(db: Database): UserLookups {
  return {
    usersByIds: preparedByIds((idsCondition) => db.select().from(users).where(idsCondition(users.id)).prepare('')),
    apiKeysByIds: preparedByIds((idsCondition) => db.select(apiKeyColumns).from(apiKeys).where(idsCondition(apiKeys.id)).prepare('')),
    apiKeysByUserIds: preparedByIds((idsCondition) =>
      db
        .select(apiKeyColumns)
        .from(apiKeys)
        .where(idsCondition(apiKeys.userId))
        .orderBy(asc(apiKeys.createdAt), asc(apiKeys.id))
        .prepare(''),
    ),
  };
}

/**
 * One page of users in (created_at, id) order. `afterId` is the last id of the previous page;
 * comparing against that row's own stored timestamp keeps microsecond precision exact.
 * Fetches one extra row to know whether another page exists.
 */
export async function listUsers(
  db: Database,
  first: number,
  afterId: string | undefined,
): Promise<{ rows: UserRow[]; hasNextPage: boolean }> {
  const after = afterId
    ? sql`(${users.createdAt}, ${users.id}) > (select u.created_at, u.id from auth.users u where u.id = ${afterId})`
    : undefined;
  const rows = await db
    .select()
    .from(users)
    .where(after)
    .orderBy(asc(users.createdAt), asc(users.id))
    .limit(first + 1);
  return { rows: rows.slice(0, first), hasNextPage: rows.length > first };
}

/**
 * Revokes a key; revoking twice keeps the first revocation time. `revokedNow` tells whether this
 * call revoked it (of concurrent calls, exactly one), so only that one is audited as the revocation.
 */
export async function revokeApiKey(db: Database, id: string): Promise<{ apiKey: ApiKeyRow; revokedNow: boolean } | undefined> {
  const [revoked] = await db
    .update(apiKeys)
    .set({ revokedAt: sql`now()` })
    .where(and(eq(apiKeys.id, id), isNull(apiKeys.revokedAt)))
    .returning(apiKeyColumns);
  if (revoked) return { apiKey: revoked, revokedNow: true };
  // Already revoked (or no such key): a concurrent revocation waited for above has committed by now.
  const [existing] = await db.select(apiKeyColumns).from(apiKeys).where(eq(apiKeys.id, id));
  return existing && { apiKey: existing, revokedNow: false };
}

/** The key row and its owner's role, looked up by the visible prefix. */
export async function findKeyForExchange(db: Database, prefix: string) {
  const [row] = await db
    .select({
      id: apiKeys.id,
      userId: apiKeys.userId,
      secretHash: apiKeys.secretHash,
      revokedAt: apiKeys.revokedAt,
      role: users.role,
    })
    .from(apiKeys)
    .innerJoin(users, eq(users.id, apiKeys.userId))
    .where(eq(apiKeys.prefix, prefix));
  return row;
}

/** Stamps `last_used_at`; false when the key was revoked in the meantime. */
export async function markApiKeyUsed(db: Database, id: string): Promise<boolean> {
  const rows = await db
    .update(apiKeys)
    .set({ lastUsedAt: sql`now()` })
    .where(and(eq(apiKeys.id, id), isNull(apiKeys.revokedAt)))
    .returning({ id: apiKeys.id });
  return rows.length === 1;
}
