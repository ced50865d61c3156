import type { GraphQLResolverMap } from '@apollo/subgraph';
import type { Database } from '@ghostpay/db';
import {
  BadUserInputError,
  ForbiddenError,
  hasScope,
  NotFoundError,
  type Principal,
  requirePrincipal,
  requireScope,
  type SubgraphContext,
  UnauthenticatedError,
  z,
} from '@ghostpay/platform';
import { GraphQLScalarType, Kind } from 'graphql';
import type { Loaders } from './loaders.ts';
import type { SigningKeyRing } from './signing-key-ring.ts';
import type { TokenExchange } from './token-exchange.ts';
import { type ApiKeyRow, createApiKeyFor, createUserWithApiKey, listUsers, revokeApiKey, type UserRow } from './users.ts';

export interface AuthContext extends SubgraphContext {
  loaders: Loaders;
  /** Socket peer, or the trusted `x-forwarded-for` entry: the failed-exchange limiting identity. */
  clientAddress: string;
}

export interface ResolverDeps {
  db: Database;
  exchange: TokenExchange;
  keyRing: SigningKeyRing;
  /** Unrevoked keys a user may hold when the caller cannot write others' keys (no `keys:write`). */
  maxApiKeysPerUser: number;
  /** Told each key this process revokes (or finds revoked), so its tokens are refused here at once. */
  onRevoked?: (apiKeyId: string) => void;
}

const maxPageSize = 100;
const rateLimitSchema = z.number().int().min(1).max(1_000_000);
/**
 * Control characters (NUL, which PostgreSQL refuses in text, line breaks), bidirectional
 * overrides and isolates (they make a name display as something else) and unpaired surrogates
 * (stored as U+FFFD: not what was sent). Letters of any script and the joiners some need pass.
 */
const unsafeInName = /[\p{Cc}\u202A-\u202E\u2066-\u2069]/u;
const createUserSchema = z.object({
  name: z
    .string()
    .trim()
    .min(1)
    .max(200)
    .refine((name) => name.isWellFormed() && !unsafeInName.test(name), 'must not contain control or bidirectional formatting characters'),
  email: z.string().trim().toLowerCase().pipe(z.email().max(320)),
  role: z.enum(['admin', 'merchant', 'user']),
  rateLimitPerMinute: rateLimitSchema.nullish(),
});

/** Turns zod issues into BAD_USER_INPUT with a dotted field path under `prefix`. */
function parseInput<T>(schema: z.ZodType<T>, value: unknown, prefix: string): T {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  throw new BadUserInputError(
    result.error.issues.map((issue) => ({
      field: [prefix, ...issue.path].filter((part) => part !== '').join('.'),
      message: issue.message,
    })),
  );
}

const isAdmin = (principal: Principal) => hasScope(principal, 'admin');

/** Opaque cursors: base64url of the row id, so clients cannot build or interpret them. */
const encodeCursor = (id: string) => Buffer.from(`user:${id}`, 'utf8').toString('base64url');
function decodeCursor(cursor: string): string {
  const decoded = Buffer.from(cursor, 'base64url').toString('utf8');
  if (!/^user:usr_[0-9A-Za-z]{1,64}$/.test(decoded)) throw new BadUserInputError([{ field: 'after', message: 'is not a valid cursor' }]);
  return decoded.slice('user:'.length);
}

const dateTime = new GraphQLScalarType({
  name: 'DateTime',
  serialize(value) {
    if (value instanceof Date) return value.toISOString();
    if (typeof value === 'string') return new Date(value).toISOString();
    throw new TypeError('DateTime must be a Date');
  },
  parseValue(value) {
    const date = typeof value === 'string' ? new Date(value) : undefined;
    if (!date || Number.isNaN(date.getTime())) throw new BadUserInputError('DateTime must be an ISO 8601 string');
    return date;
  },
  parseLiteral(ast) {
    const date = ast.kind === Kind.STRING ? new Date(ast.value) : undefined;
    if (!date || Number.isNaN(date.getTime())) throw new BadUserInputError('DateTime must be an ISO 8601 string');
    return date;
  },
});

export function createResolvers({ db, exchange, keyRing, maxApiKeysPerUser, onRevoked }: ResolverDeps): GraphQLResolverMap<AuthContext> {
  /** A key the caller may see: their own, or any for admins. */
  const visibleKey = (principal: Principal, key: ApiKeyRow | undefined) =>
    key && (key.userId === principal.userId || isAdmin(principal)) ? key : undefined;

  /**
   * Mutations of users, keys and signing keys refuse a token minted from an API key revoked since
   * (or gone): an access token outlives its key's revocation until it expires, and whoever holds
   * a leaked key must not use that time to mint a fresh key or revoke the owner's others.
   */
  const requireLiveKey = async (principal: Principal, context: AuthContext): Promise<Principal> => {
    const key = await context.loaders.apiKey.load(principal.apiKeyId);
    if (!key || key.revokedAt) throw new UnauthenticatedError('The API key this token was issued for has been revoked');
    return principal;
  };

  return {
    DateTime: dateTime,
    Role: { ADMIN: 'admin', MERCHANT: 'merchant', USER: 'user' },
    SigningKeyState: { NEXT: 'next', CURRENT: 'current', RETIRED: 'retired', REMOVED: 'removed' },
    Query: {
      async me(_root, _args, context) {
        const principal = requirePrincipal(context);
        const user = await context.loaders.user.load(principal.userId);
        if (!user) throw new NotFoundError('User', principal.userId);
        return user;
      },
      async user(_root, { id }: { id: string }, context) {
        const principal = requirePrincipal(context);
        if (id !== principal.userId) requireScope(context, 'users:read');
        return (await context.loaders.user.load(id)) ?? null;
      },
      async users(_root, args: { first?: number | null; after?: string | null }, context) {
        requireScope(context, 'admin');
        const first = args.first ?? 20;
        if (!Number.isInteger(first) || first < 1 || first > maxPageSize) {
          throw new BadUserInputError([{ field: 'first', message: `must be between 1 and ${maxPageSize}` }]);
        }
        const { rows, hasNextPage } = await listUsers(db, first, args.after ? decodeCursor(args.after) : undefined);
        for (const row of rows) context.loaders.user.prime(row.id, row);
        const edges = rows.map((node) => ({ cursor: encodeCursor(node.id), node }));
        return { edges, pageInfo: { hasNextPage, endCursor: edges.at(-1)?.cursor ?? null } };
      },
    },
    Mutation: {
      createToken(_root, { apiKey }: { apiKey: string }, context) {
        return exchange(apiKey, context.clientAddress, context.logger);
      },
      async createUser(_root, { input }: { input: unknown }, context) {
        const principal = await requireLiveKey(requireScope(context, 'users:write'), context);
        const parsed = parseInput(createUserSchema, input, 'input');
        const { user, apiKey, secret } = await createUserWithApiKey(db, parsed);
        context.logger.info(
          { userId: user.id, role: user.role, apiKeyId: apiKey.id, by: principal.userId, byApiKeyId: principal.apiKeyId },
          'user created',
        );
        return { user, apiKey, secret };
      },
      async createApiKey(_root, args: { userId: string; rateLimitPerMinute?: number | null }, context) {
        const principal = requirePrincipal(context);
        if (args.userId !== principal.userId) requireScope(context, 'keys:write');
        await requireLiveKey(principal, context);
        // A key's rate limit is a quota: callers must not raise their own.
        if (args.rateLimitPerMinute != null && !hasScope(principal, 'keys:write')) {
          throw new ForbiddenError('Only admins may set rateLimitPerMinute');
        }
        const rateLimit = parseInput(rateLimitSchema.nullish(), args.rateLimitPerMinute, 'rateLimitPerMinute') ?? null;
        if (!(await context.loaders.user.load(args.userId))) throw new NotFoundError('User', args.userId);
        // Admins (keys:write) provision keys for others and are not capped; everyone else is.
        const issued = await createApiKeyFor(db, args.userId, rateLimit, hasScope(principal, 'keys:write') ? undefined : maxApiKeysPerUser);
        context.logger.info(
          { userId: args.userId, apiKeyId: issued.apiKey.id, by: principal.userId, byApiKeyId: principal.apiKeyId },
          'API key created',
        );
        return issued;
      },
      async revokeApiKey(_root, { id }: { id: string }, context) {
        const principal = await requireLiveKey(requirePrincipal(context), context);
        // Someone else's key is NOT_FOUND for a non-admin: its existence is not their business.
        if (!visibleKey(principal, await context.loaders.apiKey.load(id))) throw new NotFoundError('API key', id);
        const outcome = await revokeApiKey(db, id);
        if (!outcome) throw new NotFoundError('API key', id);
        const { apiKey: revoked, revokedNow } = outcome;
        onRevoked?.(id);
        // The audit trail: who revoked it, with which of their keys; a repeat changes nothing and says so.
        const audit = { apiKeyId: id, ownerId: revoked.userId, by: principal.userId, byApiKeyId: principal.apiKeyId };
        if (revokedNow) context.logger.info(audit, 'API key revoked');
        else context.logger.info({ ...audit, revokedAt: revoked.revokedAt }, 'API key already revoked: nothing changed');
        return revoked;
      },
      async rotateSigningKey(_root, _args, context) {
        const principal = await requireLiveKey(requireScope(context, 'admin'), context);
        await keyRing.rotate();
        context.logger.info({ by: principal.userId, byApiKeyId: principal.apiKeyId }, 'signing key rotated on demand');
        return (await keyRing.keys()).filter((key) => key.state !== 'removed');
      },
    },
    User: {
      __resolveReference(reference: { id: string }, context: AuthContext) {
        requirePrincipal(context);
        return context.loaders.user.load(reference.id).then((user) => user ?? null);
      },
      apiKeys(user: UserRow, _args, context) {
        const principal = requirePrincipal(context);
        if (user.id !== principal.userId && !isAdmin(principal)) throw new ForbiddenError('Only the user and admins see API keys');
        return context.loaders.apiKeysOfUser.load(user.id);
      },
    },
    ApiKey: {
      async __resolveReference(reference: { id: string }, context: AuthContext) {
        const principal = requirePrincipal(context);
        return visibleKey(principal, await context.loaders.apiKey.load(reference.id)) ?? null;
      },
    },
  } as GraphQLResolverMap<AuthContext>;
}
