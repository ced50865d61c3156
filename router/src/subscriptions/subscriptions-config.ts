import { env, type SecretsProvider, z } from '@ghostpay/platform';
import { nameUrlMap } from '../config.ts';
import { createApiKeyTokenSource } from './service-token.ts';
import type { SubscriptionGatewayOptions } from './subscription-gateway.ts';

/** The secret holding the API key the router exchanges for its upstream subscription token. */
export const subscriptionsApiKeySecret = 'router-subscriptions-api-key';

/**
 * The most upstream subscriptions the router puts on one socket: charges' default
 * SUBSCRIPTION_MAX_PER_SOCKET (subgraphs/charges/src/config.ts), the most one charges socket holds.
 */
export const maxUpstreamSocketCapacity = 1_000;

/** `charges=ws://127.0.0.1:4003/graphql,…` → { charges: '…' } */
const wsUrlMap = nameUrlMap(['ws:', 'wss:']);

/** Subscription settings of the router, from env (table in router/src/subscriptions/README.md). */
export const routerSubscriptionsConfigSchema = z.object({
  /** Directory of secret files (watched); `router-subscriptions-api-key` is read from it. */
  SECRETS_DIR: env.filePath().optional(),
  ROUTER_SUBSCRIPTIONS: env.boolean(true),
  ROUTER_SUBSCRIPTION_UPSTREAMS: wsUrlMap,
  ROUTER_SUBSCRIPTION_MAX_PER_CONNECTION: env.positiveInt(20),
  /** Subscriptions per user (all their API keys together; the name is older than that). */
  ROUTER_SUBSCRIPTION_MAX_PER_API_KEY: env.positiveInt(200),
  /** Authenticated WebSockets per user (as above) on one router process. @default 2 × ROUTER_SUBSCRIPTION_MAX_PER_API_KEY */
  ROUTER_SUBSCRIPTION_MAX_WEBSOCKETS_PER_API_KEY: env.wholeNumber({ min: 1 }).optional(),
  /** WebSockets of one client address not authenticated yet (upgrade to accepted connection_init), per router process. */
  ROUTER_SUBSCRIPTION_MAX_UNAUTHENTICATED_WEBSOCKETS_PER_ADDRESS: env.positiveInt(100),
  ROUTER_SUBSCRIPTION_IDLE_TIMEOUT_MS: env.milliseconds(60_000),
  ROUTER_SUBSCRIPTION_KEEPALIVE_MS: env.milliseconds(15_000),
  /**
   * Upstream subscriptions per upstream socket before another opens. At most what one charges
   * socket accepts (charges' SUBSCRIPTION_MAX_PER_SOCKET, 1000 by default): past that, charges
   * refuses each further subscribe (OPERATION_LIMIT_EXCEEDED) and the pool would retry it for ever.
   */
  ROUTER_SUBSCRIPTION_UPSTREAM_SOCKET_CAPACITY: env
    .wholeNumber({
      min: 1,
      max: maxUpstreamSocketCapacity,
      message:
        `must be a whole number from 1 to ${maxUpstreamSocketCapacity}, in digits: the charges subgraph accepts at most ` +
        `SUBSCRIPTION_MAX_PER_SOCKET (default ${maxUpstreamSocketCapacity}) subscriptions on one socket and refuses the rest, ` +
        'which the router would retry for ever; keep it at or below charges’ SUBSCRIPTION_MAX_PER_SOCKET',
    })
    .default(500),
  ROUTER_SUBSCRIPTION_REVOCATION_CHECK_MS: env.milliseconds(10_000),
  /** SSE: bytes waiting in the router for a client that does not read; past it the stream is dropped. */
  ROUTER_SUBSCRIPTION_SSE_MAX_BUFFERED_BYTES: env.positiveInt(1024 * 1024),
  /** SSE: how long an ended subscription's response may take to reach its client before the connection is dropped. */
  ROUTER_SUBSCRIPTION_SSE_END_TIMEOUT_MS: env.milliseconds(10_000),
});
export type RouterSubscriptionsConfig = z.infer<typeof routerSubscriptionsConfigSchema>;

/** What `createRouter` needs to serve subscriptions (its `subscriptions` dependency). */
export type RouterSubscriptionsSettings = Pick<SubscriptionGatewayOptions, 'upstreams' | 'upstreamAuthorization' | 'limits' | 'upstream'>;

/**
 * Settings for `createRouter` from env and secrets; undefined (subscriptions off) when
 * `ROUTER_SUBSCRIPTIONS=false`. Upstream URLs default to each subgraph's HTTP URL with a ws
 * scheme (`ROUTER_SUBGRAPH_URLS.charges`, else charges' default port).
 */
export function routerSubscriptionsSettings(
  config: RouterSubscriptionsConfig,
  subgraphUrls: Readonly<Record<string, string>>,
  secrets: SecretsProvider,
): RouterSubscriptionsSettings | undefined {
  if (!config.ROUTER_SUBSCRIPTIONS) return undefined;
  const chargesHttp = subgraphUrls.charges ?? 'http://127.0.0.1:4003/graphql';
  return {
    upstreams: { charges: chargesHttp.replace(/^http/, 'ws'), ...config.ROUTER_SUBSCRIPTION_UPSTREAMS },
    upstreamAuthorization: createApiKeyTokenSource({
      authUrl: subgraphUrls.auth ?? 'http://127.0.0.1:4001/graphql',
      apiKey: () => secrets.get(subscriptionsApiKeySecret),
    }),
    limits: {
      maxPerConnection: config.ROUTER_SUBSCRIPTION_MAX_PER_CONNECTION,
      maxPerApiKey: config.ROUTER_SUBSCRIPTION_MAX_PER_API_KEY,
      maxWebSocketsPerApiKey: config.ROUTER_SUBSCRIPTION_MAX_WEBSOCKETS_PER_API_KEY,
      maxUnauthenticatedWebSocketsPerAddress: config.ROUTER_SUBSCRIPTION_MAX_UNAUTHENTICATED_WEBSOCKETS_PER_ADDRESS,
      idleTimeoutMs: config.ROUTER_SUBSCRIPTION_IDLE_TIMEOUT_MS,
      keepAliveMs: config.ROUTER_SUBSCRIPTION_KEEPALIVE_MS,
      revocationCheckMs: config.ROUTER_SUBSCRIPTION_REVOCATION_CHECK_MS,
      sseMaxBufferedBytes: config.ROUTER_SUBSCRIPTION_SSE_MAX_BUFFERED_BYTES,
      sseEndTimeoutMs: config.ROUTER_SUBSCRIPTION_SSE_END_TIMEOUT_MS,
    },
    upstream: { maxSubscriptionsPerSocket: config.ROUTER_SUBSCRIPTION_UPSTREAM_SOCKET_CAPACITY },
  };
}
