import { request } from 'undici';

export interface ApiKeyTokenSourceOptions {
  /** The auth subgraph's GraphQL URL (its `createToken` mutation). */
  authUrl: string;
  /** The router's API key, read on every exchange so a rotated secret is picked up. */
  apiKey: () => string | undefined;
  /** Exchange again when less than this fraction of the token's lifetime is left. @default 0.2 */
  refreshWhenRemaining?: number;
  /** @default Date.now */
  now?: () => number;
}

/**
 * The router's own bearer token for upstream subscription sockets: its API key exchanged
 * at the auth service (`createToken`), cached and exchanged again before it expires, so a
 * reconnect never presents an expired token. Concurrent callers share one exchange.
 */
export function createApiKeyTokenSource(options: ApiKeyTokenSourceOptions): () => Promise<string> {
  const refreshWhenRemaining = options.refreshWhenRemaining ?? 0.2;
  const now = options.now ?? Date.now;
  let cached: { header: string; refreshAt: number } | undefined;
  let exchanging: Promise<string> | undefined;

  const exchange = async (): Promise<string> => {
    const apiKey = options.apiKey();
    if (!apiKey) throw new Error('the router-subscriptions-api-key secret is not set');
    const response = await request(options.authUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        query: 'mutation RouterSubscriptionToken($apiKey: String!) { createToken(apiKey: $apiKey) { accessToken expiresIn } }',
        variables: { apiKey },
      }),
      headersTimeout: 5_000,
      bodyTimeout: 5_000,
    });
    const body = (await response.body.json()) as {
      data?: { createToken?: { accessToken: string; expiresIn: number } } | null;
      errors?: { extensions?: { code?: string } }[];
    };
    const token = body.data?.createToken;
    if (!token) throw new Error(`token exchange failed: ${body.errors?.map((e) => e.extensions?.code).join(', ') ?? response.statusCode}`);
    const lifetimeMs = token.expiresIn * 1000;
    cached = { header: `Bearer ${token.accessToken}`, refreshAt: now() + lifetimeMs * (1 - refreshWhenRemaining) };
    return cached.header;
  };

  return async () => {
    if (cached && now() < cached.refreshAt) return cached.header;
    exchanging ??= exchange().finally(() => {
      exchanging = undefined;
    });
    return exchanging;
  };
}
