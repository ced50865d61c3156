export { type AccessToken, createAccessTokenIssuer } from './access-tokens.ts';
export { generateApiKey, hashApiKey, parseApiKey } from './api-key-format.ts';
export { type AuthConfig, authConfigSchema } from './config.ts';
export { type AuthService, type AuthServiceDeps, authTypeDefs, createAuthService } from './create-auth-service.ts';
export { jwksPath } from './jwks-route.ts';
export { parseKekRing, signingKekSecret } from './key-encryption.ts';
export type { AuthContext } from './resolvers.ts';
export type { SigningKeyInfo, SigningKeyRing } from './signing-key-ring.ts';
export { type ApiKeyRow, seedUser, type UserRow } from './users.ts';
