import { ErrorCode, type FieldProblem, httpStatusFor } from '@ghostpay/platform';
import { restFieldName } from './operation-mappings.ts';
import type { GraphQLResponseError } from './router-client.ts';

/** The one error envelope of the REST contract. */
export interface ErrorEnvelope {
  error: { code: string; message: string; request_id: string; fields?: FieldProblem[] };
}

export function errorEnvelope(code: string, message: string, requestId: string, fields?: FieldProblem[]): ErrorEnvelope {
  return { error: { code, message, request_id: requestId, ...(fields && fields.length > 0 ? { fields } : {}) } };
}

/**
 * Codes that, coming back for one of the bridge's own persisted documents, mean the bridge
 * and the router disagree (a stale manifest, a schema change, a limit set below what the
 * contract needs): the client's request was valid, so they are the server's fault.
 */
const deploymentFaults = new Set<string>([
  ErrorCode.GRAPHQL_PARSE_FAILED,
  ErrorCode.GRAPHQL_VALIDATION_FAILED,
  ErrorCode.PERSISTED_QUERY_NOT_FOUND,
  ErrorCode.PERSISTED_QUERY_NOT_SUPPORTED,
  ErrorCode.OPERATION_LIMIT_EXCEEDED,
]);

/** Most decisive first: when several fields fail, the status reflects the gravest cause. */
const precedence: string[] = [
  ErrorCode.UNAUTHENTICATED,
  ErrorCode.RATE_LIMITED,
  ErrorCode.FORBIDDEN,
  ErrorCode.BAD_USER_INPUT,
  ErrorCode.IDEMPOTENCY_KEY_REUSED,
  ErrorCode.IDEMPOTENCY_KEY_IN_USE,
  ErrorCode.NOT_FOUND,
  ErrorCode.CARD_DECLINED,
  ErrorCode.PAYLOAD_TOO_LARGE,
  ErrorCode.SUBGRAPH_UNAVAILABLE,
  ErrorCode.SERVICE_UNAVAILABLE,
];

/**
 * The message of a 503 (router unreachable or timed out, a subgraph down): fixed, since the
 * router's and subgraphs' own texts (`Subgraph "charges" is unavailable (ECONNREFUSED)`) name
 * the deployment's parts and are for its logs, not clients.
 */
export const unavailableMessage = 'The API is temporarily unavailable; retry with backoff';

/**
 * How a client may retry after a 503, which it cannot tell from a request that never ran:
 * - `safe`: a read, or a call that does the same when repeated (cancel, reveal, token exchange);
 * - `same-key`: sent with an `Idempotency-Key`; a retry with that key replays the outcome;
 * - `unknown-outcome`: a mutation that takes a key, sent without one (a card issue: charges
 *   and refunds require the key). It may have been applied before the failure (a router
 *   timeout after the write), and a retry would be a new request: a second card.
 */
export type RetryAdvice = 'safe' | 'same-key' | 'unknown-outcome';

export function unavailableMessageFor(advice: RetryAdvice): string {
  if (advice === 'same-key') return 'The API is temporarily unavailable; retry with backoff and the same Idempotency-Key';
  if (advice === 'unknown-outcome') {
    return (
      'The outcome is unknown: the request may have been applied. Check the resource (the card list) before ' +
      'retrying, since a retry without an Idempotency-Key is a new request'
    );
  }
  return unavailableMessage;
}

/**
 * One message for a 400, rebuilt from the REST field names (`amount: must be >= 1`), so it
 * never shows the GraphQL names (`input.amount`, `after`) the services wrote theirs with.
 */
export function badInputMessage(problems: FieldProblem[]): string {
  if (problems.length === 0) return 'The request is not valid';
  return problems.map((p) => (p.field ? `${p.field}: ${p.message}` : p.message)).join('; ');
}

export interface MappedError {
  status: number;
  envelope: ErrorEnvelope;
  /** Set when the failure is the deployment's, to log loudly. */
  deploymentFault?: string;
  /** Seconds from `extensions.retryAfter`, for a `Retry-After` the router did not send. */
  retryAfter?: number;
}

/**
 * Maps GraphQL errors to one HTTP status and envelope with platform's `httpStatusFor`
 * table. The router's messages are already client-safe (`formatGraphQLError`); unknown
 * codes become INTERNAL_SERVER_ERROR with a generic message.
 */
export function mapGraphQLErrors(errors: GraphQLResponseError[], requestId: string, pathParams: string[]): MappedError {
  const codes = errors.map((e) => e.extensions?.code ?? ErrorCode.INTERNAL_SERVER_ERROR);
  const fault = codes.find((code) => deploymentFaults.has(code));
  if (fault) {
    return {
      status: 500,
      envelope: errorEnvelope(ErrorCode.INTERNAL_SERVER_ERROR, 'Internal server error', requestId),
      deploymentFault: `${fault}: ${errors.find((e) => e.extensions?.code === fault)?.message ?? ''}`,
    };
  }
  const chosenCode = precedence.find((code) => codes.includes(code)) ?? codes[0] ?? ErrorCode.INTERNAL_SERVER_ERROR;
  const chosen = errors.find((e) => (e.extensions?.code ?? ErrorCode.INTERNAL_SERVER_ERROR) === chosenCode);
  const status = httpStatusFor(chosenCode);
  if (status >= 500 && chosenCode !== ErrorCode.SUBGRAPH_UNAVAILABLE && chosenCode !== ErrorCode.SERVICE_UNAVAILABLE) {
    return { status: 500, envelope: errorEnvelope(ErrorCode.INTERNAL_SERVER_ERROR, 'Internal server error', requestId) };
  }
  if (chosenCode === ErrorCode.SUBGRAPH_UNAVAILABLE || chosenCode === ErrorCode.SERVICE_UNAVAILABLE) {
    return { status, envelope: errorEnvelope(chosenCode, unavailableMessage, requestId) };
  }
  let message = chosen?.message ?? 'Request failed';
  let fields: FieldProblem[] | undefined;
  if (chosenCode === ErrorCode.BAD_USER_INPUT) {
    // Only the problems the services listed, by REST name: a message without them may be
    // GraphQL's own (`Variable "$input" got invalid value …`), which names GraphQL types and
    // repeats the value sent.
    const problems = errors
      .filter((e) => e.extensions?.code === ErrorCode.BAD_USER_INPUT)
      .flatMap((e) => (Array.isArray(e.extensions?.fields) ? (e.extensions.fields as FieldProblem[]) : []))
      .filter((p) => typeof p?.field === 'string' && typeof p.message === 'string')
      .map((p) => ({ field: restFieldName(p.field, pathParams), message: p.message }));
    message = badInputMessage(problems);
    // A problem about the request as a whole (field "") is in the message, not in `fields`.
    fields = problems.filter((p) => p.field !== '');
  }
  const retryAfter = Number(chosen?.extensions?.retryAfter);
  return {
    status,
    envelope: errorEnvelope(chosenCode, message, requestId, fields),
    ...(Number.isFinite(retryAfter) && retryAfter >= 0 ? { retryAfter: Math.ceil(retryAfter) } : {}),
  };
}

/** What the bridge answers for a router answer that holds no GraphQL data or errors. */
export interface NonGraphQLAnswer {
  status: number;
  code: ErrorCode;
  message: string;
  /** Whether the router's `Retry-After`/`RateLimit` headers belong on this answer. */
  keepsRateLimitHeaders: boolean;
}

/**
 * An answer without GraphQL data or errors (a proxy's or load balancer's HTML page, an empty
 * body) is mapped by its status alone: a refused token stays 401 and a rate limit stays 429
 * (with its `Retry-After`), a gateway failure is 503, and anything else is the server's fault.
 */
export function mapNonGraphQLAnswer(status: number): NonGraphQLAnswer {
  if (status === 401) {
    return { status: 401, code: ErrorCode.UNAUTHENTICATED, message: 'The access token was refused', keepsRateLimitHeaders: false };
  }
  if (status === 429) {
    return { status: 429, code: ErrorCode.RATE_LIMITED, message: 'Rate limit exceeded; retry later', keepsRateLimitHeaders: true };
  }
  if (status === 502 || status === 503 || status === 504) {
    return { status: 503, code: ErrorCode.SERVICE_UNAVAILABLE, message: unavailableMessage, keepsRateLimitHeaders: true };
  }
  return { status: 500, code: ErrorCode.INTERNAL_SERVER_ERROR, message: 'Internal server error', keepsRateLimitHeaders: false };
}
