import { resolve } from 'node:path';
import { baseConfigSchema, type ClientTlsOptions, clientTlsOptions, env, jwtVerifierEnv, z } from '@ghostpay/platform';

const repoRoot = resolve(import.meta.dirname, '../..');

/**
 * An env value listing `name=url` pairs, comma-separated (`auth=http://127.0.0.1:4001/graphql,cards=…`)
 * → `{ auth: '…', cards: '…' }`. `schemes` restricts the URL schemes (e.g. `['ws:', 'wss:']`).
 */
export function nameUrlMap(schemes?: readonly string[]) {
  const expected = schemes ? `name=${schemes.map((s) => `${s}//…`).join('|')} pairs` : 'name=url pairs';
  return z
    .string()
    .default('')
    .transform((value, ctx) => {
      const map: Record<string, string> = {};
      for (const entry of value
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean)) {
        const [name, url] = entry.split(/=(.*)/s);
        if (!name || !url || !URL.canParse(url) || (schemes && !schemes.includes(new URL(url).protocol))) {
          ctx.addIssue({ code: 'custom', message: `expected ${expected}, got "${entry}"` });
          continue;
        }
        map[name] = url;
      }
      return map;
    });
}

const subgraphUrlMap = nameUrlMap();

/** Every router setting, from env (see router/README.md for the table). */
export const routerConfigSchema = baseConfigSchema.extend({
  ROUTER_PORT: env.port(4000),
  ROUTER_SUPERGRAPH_PATH: z.string().default(resolve(repoRoot, 'supergraph.graphql')),
  ROUTER_SUBGRAPH_URLS: subgraphUrlMap,
  ...jwtVerifierEnv,
  REDIS_URL: env.optionalUrl(),
  ROUTER_REDIS_TIMEOUT_MS: env.milliseconds(1000),
  DATABASE_URL: env.optionalUrl(),
  /** Prepared statements per PostgreSQL connection (0: none); see the README. */
  DATABASE_PREPARED_STATEMENTS: env.optionalCount(),
  ROUTER_RATE_LIMIT_PER_MINUTE: env.positiveInt(100),
  ROUTER_ANONYMOUS_RATE_LIMIT_PER_MINUTE: env.positiveInt(100),
  ROUTER_TRUST_PROXY: env.boolean(false),
  ROUTER_MAX_DEPTH: env.positiveInt(10),
  ROUTER_MAX_ALIASES: env.wholeNumber().default(15),
  ROUTER_MAX_ROOT_FIELDS: env.positiveInt(10),
  ROUTER_MAX_TOKENS: env.positiveInt(2000),
  ROUTER_MAX_COST: env.positiveInt(5000),
  /** Fields sharing one response path, refused before graphql-js's quadratic overlap check; see router/README.md. */
  ROUTER_MAX_REPEATED_FIELDS: env.positiveInt(20),
  ROUTER_MAX_DEFINITIONS: env.positiveInt(50),
  ROUTER_MAX_BATCH_SIZE: env.wholeNumber().default(0),
  ROUTER_MAX_BODY_BYTES: env.positiveInt(256 * 1024),
  ROUTER_PERSISTED_QUERIES: z.enum(['apq', 'safelist']).default('apq'),
  ROUTER_PQ_MANIFESTS: z
    .string()
    .default('')
    .transform((v) =>
      v
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean),
    ),
  ROUTER_SUBGRAPH_TIMEOUT_MS: env.milliseconds(5000),
  /** Per-subgraph overrides of ROUTER_SUBGRAPH_TIMEOUT_MS: `charges=8000,analytics=1000`. */
  ROUTER_SUBGRAPH_TIMEOUTS_MS: z
    .string()
    .default('')
    .transform((value, ctx) => {
      const map: Record<string, number> = {};
      for (const entry of value
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean)) {
        const [name, ms] = entry.split('=');
        const n = Number(ms);
        if (!name || !Number.isInteger(n) || n <= 0) {
          ctx.addIssue({ code: 'custom', message: `expected name=milliseconds pairs, got "${entry}"` });
          continue;
        }
        map[name] = n;
      }
      return map;
    }),
  ROUTER_BREAKER_FAILURES: env.positiveInt(5),
  ROUTER_BREAKER_OPEN_MS: env.milliseconds(5000),
  ROUTER_PLAYGROUND: env.boolean(true),
  /** Plan executor: `compiled` (router/src/executor, plans compiled once) or `gateway` (@apollo/gateway's own). */
  ROUTER_EXECUTOR: z.enum(['compiled', 'gateway']).default('compiled'),
  /** mTLS to subgraphs (https:// URLs): the CA their certificates chain to, and the router's client certificate. */
  ROUTER_SUBGRAPH_TLS_CA_FILE: env.filePath().optional(),
  ROUTER_SUBGRAPH_TLS_CERT_FILE: env.filePath().optional(),
  ROUTER_SUBGRAPH_TLS_KEY_FILE: env.filePath().optional(),
  /** The analytics ingest endpoint (`http://analytics:4004/internal/events`); unset → no request events are sent. */
  ROUTER_ANALYTICS_URL: env.optionalUrl(),
});

export type RouterConfig = z.infer<typeof routerConfigSchema>;

/** The client certificate and CA the router presents to its subgraphs (`ROUTER_SUBGRAPH_TLS_*`), analytics' ingest included. */
export function subgraphClientTls(
  config: Pick<RouterConfig, 'ROUTER_SUBGRAPH_TLS_CA_FILE' | 'ROUTER_SUBGRAPH_TLS_CERT_FILE' | 'ROUTER_SUBGRAPH_TLS_KEY_FILE'>,
): ClientTlsOptions | undefined {
  return clientTlsOptions({
    caFile: config.ROUTER_SUBGRAPH_TLS_CA_FILE,
    certFile: config.ROUTER_SUBGRAPH_TLS_CERT_FILE,
    keyFile: config.ROUTER_SUBGRAPH_TLS_KEY_FILE,
  });
}
