import { baseConfigSchema, env, z } from '@ghostpay/platform';

/** The bridge's environment; every variable has a default suited to the embedded stack. */
export const bridgeConfigSchema = baseConfigSchema.extend({
  /** The router's GraphQL endpoint. */
  ROUTER_URL: z.url().default('http://127.0.0.1:4000/graphql'),
  BRIDGE_PORT: env.port(8080),
  /** Comma-separated exact origins allowed by CORS; empty (the default) allows none. */
  BRIDGE_CORS_ORIGINS: z
    .string()
    .default('')
    .transform((value) =>
      value
        .split(',')
        .map((origin) => origin.trim())
        .filter(Boolean),
    )
    .pipe(z.array(z.url())),
  /** The largest request body accepted; larger ones are answered 413. */
  BRIDGE_MAX_BODY_BYTES: env.positiveInt(16 * 1024),
  /** How long the bridge waits for the router's answer, and at most for a free connection to it (a call queued longer is never sent). */
  ROUTER_TIMEOUT_MS: env.milliseconds(10_000),
  /** Keep-alive connections to the router. */
  ROUTER_CONNECTIONS: env.positiveInt(64),
  /**
   * Proxies in front of the bridge that append to `X-Forwarded-For` (an ingress: 1). The client
   * is the entry that many from the right; 0 (the default) takes the socket peer. The bridge
   * sends the router that one address, never the client's own header.
   */
  BRIDGE_TRUSTED_PROXY_HOPS: env.wholeNumber({ max: 10 }).default(0),
  /** PEM files; both set → the bridge listens with TLS and sends HSTS. */
  BRIDGE_TLS_CERT_FILE: env.filePath().optional(),
  BRIDGE_TLS_KEY_FILE: env.filePath().optional(),
});

export type BridgeConfig = z.infer<typeof bridgeConfigSchema>;
