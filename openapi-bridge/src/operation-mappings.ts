import type { ValidatedRequest } from './request-validation.ts';

/** How one REST operation becomes GraphQL variables, and the GraphQL result a REST body. */
export interface OperationMapping {
  /** The root field the operation selects. */
  rootField: string;
  variables(request: ValidatedRequest): Record<string, unknown>;
  /** The REST body for the root field's value; `status` overrides the documented success status. */
  result(value: Record<string, unknown>, request: ValidatedRequest): { status?: number; body: Record<string, unknown>; declined?: string };
}

type GraphQLObject = Record<string, unknown>;

const lower = (value: unknown) => (typeof value === 'string' ? value.toLowerCase() : value);
const upper = (value: unknown) => (typeof value === 'string' ? value.toUpperCase() : value);
const orNull = (value: unknown) => value ?? null;
const idOf = (value: unknown) => (value && typeof value === 'object' ? (value as GraphQLObject).id : undefined);

/** A GraphQL `Card` as the REST `Card` (the seed contract: `card_id`, lowercase `status`, `expires_at`). */
export function toRestCard(card: GraphQLObject) {
  return {
    card_id: card.id,
    status: lower(card.status),
    amount: card.amount,
    currency: card.currency,
    bin: card.bin,
    last4: card.last4,
    brand: card.brand,
    exp_month: card.expMonth,
    exp_year: card.expYear,
    expires_at: card.expiresAt,
    user_id: idOf(card.owner),
    created_at: card.createdAt,
    used_at: orNull(card.usedAt),
    canceled_at: orNull(card.canceledAt),
  };
}

/** A GraphQL `Charge` as the REST `Charge`. */
export function toRestCharge(charge: GraphQLObject) {
  return {
    charge_id: charge.id,
    status: lower(charge.status),
    decline_code: charge.declineCode ? lower(charge.declineCode) : null,
    card_id: idOf(charge.card),
    amount: charge.amount,
    currency: charge.currency,
    refunded_amount: charge.refundedAmount ?? 0,
    description: orNull(charge.description),
    created_at: charge.createdAt,
    authorized_at: orNull(charge.authorizedAt),
    settled_at: orNull(charge.settledAt),
  };
}

/** Drops undefined entries so absent REST fields stay absent GraphQL arguments. */
function defined<T extends Record<string, unknown>>(object: T): T {
  return Object.fromEntries(Object.entries(object).filter(([, v]) => v !== undefined)) as T;
}

function filterOrUndefined(filter: Record<string, unknown>) {
  const present = defined(filter);
  return Object.keys(present).length > 0 ? present : undefined;
}

function page<T>(items: T[], pageInfo: unknown) {
  const info = (pageInfo ?? {}) as GraphQLObject;
  return { data: items, has_more: Boolean(info.hasNextPage), next_cursor: (info.endCursor as string | null | undefined) ?? null };
}

const body = (request: ValidatedRequest) => (request.body ?? {}) as Record<string, unknown>;
const cardId = (request: ValidatedRequest) => ({ id: request.params.card_id });
const chargeId = (request: ValidatedRequest) => request.params.charge_id;

/** Every GraphQL operation the contract names, by document name. */
export const operationMappings: Record<string, OperationMapping> = {
  CreateToken: {
    rootField: 'createToken',
    variables: (request) => ({ apiKey: body(request).api_key }),
    result: (token) => ({
      body: {
        access_token: token.accessToken,
        // The contract spells the scheme as RFC 6750 does, whatever case the service used.
        token_type: typeof token.tokenType === 'string' && token.tokenType.toLowerCase() === 'bearer' ? 'Bearer' : token.tokenType,
        expires_in: token.expiresIn,
        scope: token.scope,
      },
    }),
  },
  IssueCard: {
    rootField: 'issueCard',
    variables: (request) => {
      const input = body(request);
      return defined({
        input: defined({
          userId: input.user_id,
          amount: input.amount,
          currency: input.currency,
          expiresInSeconds: input.expires_in_seconds,
        }),
        idempotencyKey: request.headers['Idempotency-Key'],
      });
    },
    result: (card) => ({ body: toRestCard(card) }),
  },
  GetCard: { rootField: 'card', variables: cardId, result: (card) => ({ body: toRestCard(card) }) },
  CancelCard: { rootField: 'cancelCard', variables: cardId, result: (card) => ({ body: toRestCard(card) }) },
  RevealCard: {
    rootField: 'revealCard',
    variables: cardId,
    result: (secret, request) => ({
      body: { card_id: request.params.card_id, pan: secret.pan, cvc: secret.cvc, exp_month: secret.expMonth, exp_year: secret.expYear },
    }),
  },
  ListCards: {
    rootField: 'cards',
    variables: (request) =>
      defined({
        filter: filterOrUndefined({ status: upper(request.query.status), userId: request.query.user_id }),
        first: request.query.limit,
        after: request.query.cursor,
      }),
    result: (connection) => {
      const edges = (connection.edges as { node: GraphQLObject }[] | undefined) ?? [];
      return {
        body: page(
          edges.map((edge) => toRestCard(edge.node)),
          connection.pageInfo,
        ),
      };
    },
  },
  CreateCharge: {
    rootField: 'createCharge',
    variables: (request) => {
      const input = body(request);
      return {
        input: defined({ cardId: input.card_id, amount: input.amount, currency: input.currency, description: input.description }),
        idempotencyKey: request.headers['Idempotency-Key'],
      };
    },
    result: (charge) => {
      const rest = toRestCharge(charge);
      // Declines are data in GraphQL; REST clients get 402 with the recorded charge.
      if (rest.status === 'declined') return { status: 402, body: rest, declined: String(rest.decline_code ?? 'declined') };
      return { body: rest };
    },
  },
  GetCharge: { rootField: 'charge', variables: (request) => ({ id: chargeId(request) }), result: (c) => ({ body: toRestCharge(c) }) },
  ListCharges: {
    rootField: 'charges',
    variables: (request) =>
      defined({
        filter: filterOrUndefined({ status: upper(request.query.status), cardId: request.query.card_id }),
        first: request.query.limit,
        after: request.query.cursor,
      }),
    result: (connection) => {
      const nodes = (connection.nodes as GraphQLObject[] | undefined) ?? [];
      return { body: page(nodes.map(toRestCharge), connection.pageInfo) };
    },
  },
  RefundCharge: {
    rootField: 'refundCharge',
    variables: (request) =>
      defined({
        id: chargeId(request),
        amount: body(request).amount,
        // Required by the contract (IdempotencyKeyRequired), as on POST /charges: a request without
        // it is refused with 400 before this runs, never given a key of the bridge's making (with
        // one, each retry after a timeout or a 503 would be a new refund).
        idempotencyKey: request.headers['Idempotency-Key'],
      }),
    result: (charge) => ({ body: toRestCharge(charge) }),
  },
};

/**
 * A GraphQL argument path (`input.cardId`, `filter.userId`, `idempotencyKey`, `id`, `first`,
 * `after`) as the REST field a client sent (`card_id`, `user_id`, `Idempotency-Key`, the path
 * parameter, `limit`, `cursor`). The `input` and `filter` objects are the bridge's wrapping:
 * their fields are the REST body's and query's own.
 */
export function restFieldName(graphqlField: string, pathParams: string[]): string {
  const segments = graphqlField.split('.');
  if (segments.length > 1 && (segments[0] === 'input' || segments[0] === 'filter')) segments.shift();
  const path = segments.join('.');
  if (path === 'input') return 'body';
  if (path === 'idempotencyKey') return 'Idempotency-Key';
  if (path === 'id' && pathParams[0]) return pathParams[0];
  if (path === 'first') return 'limit';
  if (path === 'after') return 'cursor';
  return path.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}
