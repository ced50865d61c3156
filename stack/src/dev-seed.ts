import { generateApiKey, hashApiKey, parseApiKey, seedUser } from '@ghostpay/auth';
import { apiKeys, type DatabaseHandle, newId } from '@ghostpay/db';
import type { Role } from '@ghostpay/platform';
import type { DevCredential } from './dev-credentials.ts';

export interface DevUser {
  name: string;
  email: string;
  role: Role;
}

/**
 * Whether `apiKey` is an unrevoked key of a user with this email and role in this database.
 * A credentials file or key file from another database (a new DATABASE_URL, a copied data
 * directory) fails here, and its owner gets a fresh key instead of a 401 at the first request.
 */
export async function isValidDevKey(database: DatabaseHandle, apiKey: string, user: Omit<DevUser, 'name'>): Promise<boolean> {
  const parsed = parseApiKey(apiKey);
  if (!parsed) return false;
  const key = await database.db.query.apiKeys.findFirst({ where: (k, { eq }) => eq(k.prefix, parsed.prefix) });
  if (!key || key.revokedAt || key.secretHash !== hashApiKey(apiKey)) return false;
  const owner = await database.db.query.users.findFirst({ where: (u, { eq }) => eq(u.id, key.userId) });
  return owner?.email.toLowerCase() === user.email.toLowerCase() && owner.role === user.role;
}

/**
 * The dev user's credential in this database, idempotently: the `known` one while it is valid
 * here; else a fresh API key for the user with this email (a lost credentials file, or a data
 * directory new to an already-seeded database); else a new user. `issued` says whether a key
 * was made (the banner shows it then).
 */
export async function ensureDevUser(
  database: DatabaseHandle,
  user: DevUser,
  known?: DevCredential,
): Promise<{ credential: DevCredential; issued: boolean }> {
  if (known && (await isValidDevKey(database, known.apiKey, user))) return { credential: known, issued: false };
  const email = user.email.toLowerCase();
  const existing = await database.db.query.users.findFirst({ where: (u, { sql }) => sql`lower(${u.email}) = ${email}` });
  if (existing) {
    if (existing.role !== user.role) {
      throw new Error(
        `${user.email} exists in this database with role ${existing.role}, not ${user.role}: the stack cannot use it as its ${user.role}`,
      );
    }
    const generated = generateApiKey();
    await database.db
      .insert(apiKeys)
      .values({ id: newId('key'), userId: existing.id, prefix: generated.prefix, secretHash: generated.hash, rateLimitPerMinute: null });
    return { credential: { userId: existing.id, apiKey: generated.key }, issued: true };
  }
  const seeded = await seedUser(database, user);
  return { credential: { userId: seeded.user.id, apiKey: seeded.apiKey }, issued: true };
}

/**
 * Where a database is, for the credentials file: the PostgreSQL URL without its password, or
 * the PGlite directory. Tells a reader which database the keys belong to.
 */
export function describeDatabase(url: string | undefined, pgliteDir: string): string {
  return url ? withoutSecrets(url) : `pglite:${pgliteDir}`;
}

/** A connection URL fit to print: no password, no query (which may carry one). */
export function withoutSecrets(url: string): string {
  try {
    const parsed = new URL(url);
    parsed.password = '';
    parsed.search = '';
    return parsed.href;
  } catch {
    return '(unparseable URL)';
  }
}
