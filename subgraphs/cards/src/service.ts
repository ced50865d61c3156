import { readFileSync } from 'node:fs';
import type { DatabaseHandle } from '@ghostpay/db';
import {
  createMetricsRegistry,
  createSubgraphService,
  type JwtVerifier,
  type Logger,
  type PeriodicJob,
  RateLimitedError,
  type Registry,
  type SecretsProvider,
  type ServerTlsConfig,
  type SubgraphService,
  serviceServerOptionsFrom,
  UnauthenticatedError,
} from '@ghostpay/platform';
import { type DocumentNode, type GraphQLSchema, Kind, parse } from 'graphql';
import { createRateLimitDirective } from 'graphql-rate-limit';

import { createCardLoader, createCardsByIds } from './card-loader.ts';
import type { CardsConfig } from './config.ts';
import { createCardsHousekeeping } from './housekeeping.ts';
import { logPanKeyring } from './log-pan-keyring.ts';
import { createPanSecrets } from './pan-crypto.ts';
import { type CardsContext, createCardsResolvers } from './resolvers.ts';
import { createPostgresRateLimitStore } from './reveal-rate-limit-store.ts';

export interface CardsServiceDeps {
  /** HTTPS, and mTLS when it names a client CA (platform `serverTlsConfigSchema`). @default plain HTTP */
  tls?: ServerTlsConfig;
  database: DatabaseHandle;
  /** Provides `pan-encryption-keys`, `pan-fingerprint-key` and `cvc-key` (formats in the README). */
  secrets: SecretsProvider;
  logger: Logger;
  config: CardsConfig;
  verifier: JwtVerifier;
  /** @default a new registry labelled `service="cards"` */
  registry?: Registry;
}

/** The subgraph SDL, read once from `schema.graphql` beside this file. */
export const cardsTypeDefs: DocumentNode = parse(readFileSync(new URL('./schema.graphql', import.meta.url), 'utf8'));

const windowUnits: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Milliseconds of an `ms`-style duration as used by `@rateLimit(window:)`; only `<n><unit>` forms. */
export function windowToMs(window: string): number {
  const match = /^(\d+)(ms|s|m|h|d)$/.exec(window);
  if (!match) throw new Error(`@rateLimit window "${window}" must look like 30s, 15m, 1h or 1d`);
  return Number(match[1]) * windowUnits[match[2]!]!;
}

/** The `@rateLimit` arguments on `Mutation.revealCard`, read from the SDL so the store and the directive agree. */
export function revealRateLimit(typeDefs: DocumentNode): { max: number; windowMs: number } {
  for (const def of typeDefs.definitions) {
    if ((def.kind !== Kind.OBJECT_TYPE_DEFINITION && def.kind !== Kind.OBJECT_TYPE_EXTENSION) || def.name.value !== 'Mutation') continue;
    const field = def.fields?.find((f) => f.name.value === 'revealCard');
    const directive = field?.directives?.find((d) => d.name.value === 'rateLimit');
    if (!directive) break;
    const arg = (name: string) => directive.arguments?.find((a) => a.name.value === name)?.value;
    const max = arg('max');
    const window = arg('window');
    if (max?.kind !== Kind.INT || window?.kind !== Kind.STRING) break;
    return { max: Number(max.value), windowMs: windowToMs(window.value) };
  }
  throw new Error('Mutation.revealCard must carry @rateLimit(max: Int, window: String)');
}

export interface CardsService extends SubgraphService<CardsContext> {
  /** Expires cards, prunes reveal counters and old idempotency keys; started by `start()` when CARDS_HOUSEKEEPING_ENABLED, stopped by `close()`. */
  readonly housekeeping: PeriodicJob;
}

/**
 * Builds the cards subgraph without listening: resolvers, per-request DataLoader, the reveal
 * rate limit (graphql-rate-limit's directive over a PostgreSQL store), readiness on the
 * database, and a log line with the PAN key ids whenever the keyring changes. The caller owns
 * `database` and `secrets` and closes them.
 */
export function createCardsService(deps: CardsServiceDeps): CardsService {
  const { database, config, logger } = deps;
  const panSecrets = createPanSecrets(deps.secrets);
  const stopKeyringLog = logPanKeyring(deps.secrets, logger);
  const limit = revealRateLimit(cardsTypeDefs);
  const store = createPostgresRateLimitStore({ db: database.db, windowMs: limit.windowMs, max: limit.max });

  const RateLimitDirective = createRateLimitDirective({
    store,
    identifyContext: (context: CardsContext) => {
      // The directive runs before the resolver: refuse anonymous calls here too.
      if (!context.principal) throw new UnauthenticatedError();
      return context.principal.userId;
    },
    createError: (message: string) => new RateLimitedError(Math.max(1, Math.ceil((store.windowEnd() - Date.now()) / 1000)), message),
  });

  const housekeeping = createCardsHousekeeping({
    db: database.db,
    logger,
    intervalMs: config.CARDS_HOUSEKEEPING_INTERVAL_MS,
    revealWindowMs: limit.windowMs,
    idempotencyRetentionHours: config.IDEMPOTENCY_RETENTION_HOURS,
    panRetentionDays: config.CARD_PAN_RETENTION_DAYS,
  });

  const cardsByIds = createCardsByIds(database.db);
  const service = createSubgraphService<CardsContext>({
    tls: deps.tls,
    name: 'cards',
    typeDefs: cardsTypeDefs,
    resolvers: createCardsResolvers({ db: database.db, panSecrets, limits: config, logger }),
    verifier: deps.verifier,
    logger,
    registry: deps.registry ?? createMetricsRegistry('cards'),
    ...serviceServerOptionsFrom(config),
    extendContext: (base) => ({ ...base, cardLoader: createCardLoader(cardsByIds) }),
    readiness: [{ name: 'database', check: () => database.ping() }],
    transformSchema: (schema: GraphQLSchema) => {
      // graphql-rate-limit 3.x ships a graphql-tools v7 SchemaDirectiveVisitor; it wraps the
      // resolvers of fields carrying @rateLimit in place.
      RateLimitDirective.visitSchemaDirectives(schema, { rateLimit: RateLimitDirective });
      return schema;
    },
    jobs: config.CARDS_HOUSEKEEPING_ENABLED ? [housekeeping] : [],
    onClose: async () => stopKeyringLog(),
  });
  return Object.assign(service, { housekeeping });
}
