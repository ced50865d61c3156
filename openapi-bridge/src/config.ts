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
  /** How long the bridge waits for the router. */
  ROUTER_TIMEOUT_MS: env.positiveInt(10_000),
  /** Keep-alive connections to the router. */
  ROUTER_CONNECTIONS: env.positiveInt(64),
  /** PEM files; both set → the bridge listens with TLS and sends HSTS. */
  BRIDGE_TLS_CERT_FILE: z.string().min(1).optional(),
  BRIDGE_TLS_KEY_FILE: z.string().min(1).optional(),
});

export type BridgeConfig = z.infer<typeof bridgeConfigSchema>;
