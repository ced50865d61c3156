/** Roles a principal can have; the JWT `role` claim carries one of these. */
export const Roles = ['admin', 'merchant', 'user'] as const;
export type Role = (typeof Roles)[number];

/**
 * Role → scopes. Scopes are what `@requiresScopes` names in the schemas; the auth service
 * puts them in the token's `scope` claim. Documented in the README's auth section.
 */
export const scopesByRole: Record<Role, readonly string[]> = {
  admin: [
    'users:read',
    'users:write',
    'keys:write',
    'cards:read',
    'cards:write',
    'cards:reveal',
    'charges:read',
    'charges:write',
    'analytics:read',
    'admin',
  ],
  merchant: ['users:read', 'cards:read', 'cards:write', 'charges:read', 'charges:write'],
  user: ['cards:read', 'cards:reveal', 'charges:read'],
};

export function isRole(value: unknown): value is Role {
  return typeof value === 'string' && (Roles as readonly string[]).includes(value);
}

/** Who is calling, as proven by a verified access token. */
export interface Principal {
  userId: string;
  role: Role;
  scopes: readonly string[];
  /** The API key the token was minted from: the rate-limit identity. */
  apiKeyId: string;
  tokenId: string;
  /** Seconds since the epoch. */
  expiresAt: number;
}

export function hasScope(principal: Principal | undefined, scope: string): boolean {
  return principal?.scopes.includes(scope) ?? false;
}
