import { GraphQLError, type GraphQLErrorOptions, type GraphQLFormattedError } from 'graphql';

/**
 * The closed list of error codes every service may put in `extensions.code`.
 * The REST bridge maps each one to exactly one HTTP status (see `httpStatusFor`).
 */
export const ErrorCode = {
  BAD_USER_INPUT: 'BAD_USER_INPUT',
  GRAPHQL_PARSE_FAILED: 'GRAPHQL_PARSE_FAILED',
  GRAPHQL_VALIDATION_FAILED: 'GRAPHQL_VALIDATION_FAILED',
  UNAUTHENTICATED: 'UNAUTHENTICATED',
  FORBIDDEN: 'FORBIDDEN',
  NOT_FOUND: 'NOT_FOUND',
  CARD_DECLINED: 'CARD_DECLINED',
  IDEMPOTENCY_KEY_IN_USE: 'IDEMPOTENCY_KEY_IN_USE',
  IDEMPOTENCY_KEY_REUSED: 'IDEMPOTENCY_KEY_REUSED',
  RATE_LIMITED: 'RATE_LIMITED',
  OPERATION_LIMIT_EXCEEDED: 'OPERATION_LIMIT_EXCEEDED',
  PERSISTED_QUERY_NOT_FOUND: 'PERSISTED_QUERY_NOT_FOUND',
  PERSISTED_QUERY_NOT_SUPPORTED: 'PERSISTED_QUERY_NOT_SUPPORTED',
  PAYLOAD_TOO_LARGE: 'PAYLOAD_TOO_LARGE',
  SUBGRAPH_UNAVAILABLE: 'SUBGRAPH_UNAVAILABLE',
  SERVICE_UNAVAILABLE: 'SERVICE_UNAVAILABLE',
  INTERNAL_SERVER_ERROR: 'INTERNAL_SERVER_ERROR',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

const statusByCode: Record<ErrorCode, number> = {
  BAD_USER_INPUT: 400,
  GRAPHQL_PARSE_FAILED: 400,
  GRAPHQL_VALIDATION_FAILED: 400,
  UNAUTHENTICATED: 401,
  CARD_DECLINED: 402,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  IDEMPOTENCY_KEY_IN_USE: 409,
  PAYLOAD_TOO_LARGE: 413,
  IDEMPOTENCY_KEY_REUSED: 422,
  OPERATION_LIMIT_EXCEEDED: 400,
  PERSISTED_QUERY_NOT_FOUND: 400,
  PERSISTED_QUERY_NOT_SUPPORTED: 400,
  RATE_LIMITED: 429,
  INTERNAL_SERVER_ERROR: 500,
  SUBGRAPH_UNAVAILABLE: 503,
  SERVICE_UNAVAILABLE: 503,
};

/** The one table from error code to HTTP status, used by the router and the REST bridge. */
export function httpStatusFor(code: string | undefined): number {
  return (code !== undefined && Object.hasOwn(statusByCode, code) && statusByCode[code as ErrorCode]) || 500;
}

export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && Object.hasOwn(statusByCode, code);
}

/** Base class: stamps `extensions.code` from the closed list. */
export class GhostPayError extends GraphQLError {
  constructor(code: ErrorCode, message: string, options: GraphQLErrorOptions = {}) {
    super(message, { ...options, extensions: { ...options.extensions, code } });
  }
}

export interface FieldProblem {
  /** Dotted path of the offending input field, e.g. `input.amount`. */
  field: string;
  message: string;
}

export class BadUserInputError extends GhostPayError {
  readonly problems: FieldProblem[];
  constructor(problems: FieldProblem[] | string) {
    const list = typeof problems === 'string' ? [{ field: '', message: problems }] : problems;
    const message = list.map((p) => (p.field ? `${p.field}: ${p.message}` : p.message)).join('; ');
    super(ErrorCode.BAD_USER_INPUT, message, { extensions: { fields: list } });
    this.problems = list;
  }
}

export class UnauthenticatedError extends GhostPayError {
  constructor(message = 'Authentication required') {
    super(ErrorCode.UNAUTHENTICATED, message);
  }
}

export class ForbiddenError extends GhostPayError {
  constructor(message = 'Not allowed') {
    super(ErrorCode.FORBIDDEN, message);
  }
}

/**
 * Ids are echoed in NOT_FOUND messages for the caller's convenience, except when the "id" the
 * client sent looks like a card number (12+ digits, spaces and dashes ignored): a PAN pasted
 * where an id goes must not travel on in error bodies, client logs and analytics.
 */
function echoableId(id: string | undefined): string | undefined {
  return id && !/\d{12,}/.test(id.replace(/[\s-]/g, '')) ? id : undefined;
}

export class NotFoundError extends GhostPayError {
  constructor(what: string, id?: string) {
    const shown = echoableId(id);
    super(ErrorCode.NOT_FOUND, shown ? `${what} ${shown} not found` : `${what} not found`);
  }
}

export class IdempotencyKeyReusedError extends GhostPayError {
  constructor() {
    super(ErrorCode.IDEMPOTENCY_KEY_REUSED, 'This idempotency key was already used with different parameters');
  }
}

/**
 * The request holding the key is still in flight. `retryAfterSeconds` (whole seconds, as
 * `RateLimitedError`'s) is when a retry with the same key can expect the original's answer
 * replayed, or to run itself if the original gave up: the service that holds the key knows how
 * long its claim can last. It goes to clients as `extensions.retryAfter` and becomes the REST
 * bridge's `Retry-After`.
 */
export class IdempotencyKeyInUseError extends GhostPayError {
  constructor(retryAfterSeconds: number) {
    const seconds = Math.max(1, Math.ceil(retryAfterSeconds));
    super(
      ErrorCode.IDEMPOTENCY_KEY_IN_USE,
      `A request with this idempotency key is still in progress; retry with the same key in ${seconds} s`,
      { extensions: { retryAfter: seconds } },
    );
  }
}

export class RateLimitedError extends GhostPayError {
  constructor(retryAfterSeconds: number, message = 'Rate limit exceeded') {
    super(ErrorCode.RATE_LIMITED, message, { extensions: { retryAfter: retryAfterSeconds } });
  }
}

export class ServiceUnavailableError extends GhostPayError {
  constructor(message = 'Service temporarily unavailable') {
    super(ErrorCode.SERVICE_UNAVAILABLE, message);
  }
}

/**
 * Apollo `formatError` hook shared by every service: known codes pass through;
 * anything else becomes INTERNAL_SERVER_ERROR with a generic message, no stack trace.
 */
export function formatGraphQLError(formatted: GraphQLFormattedError, _original?: unknown): GraphQLFormattedError {
  const code = formatted.extensions?.code;
  // Apollo Server's own request errors (no query, a GET mutation, a CSRF refusal, a bad
  // request shape; OPERATION_RESOLUTION_FAILURE: no operation name for a document with several,
  // or a name the document lacks) are the client's mistakes: their message under the closed
  // list's code.
  if (code === 'BAD_REQUEST' || code === 'OPERATION_RESOLUTION_FAILURE') {
    return { message: formatted.message, extensions: { code: ErrorCode.BAD_USER_INPUT } };
  }
  const { stacktrace: _s, exception: _e, ...extensions } = formatted.extensions ?? {};
  if (code === ErrorCode.INTERNAL_SERVER_ERROR && isUnavailableDependency(_original)) {
    return {
      message: 'A dependency is temporarily unavailable; retry with the same idempotency key',
      ...(formatted.path ? { path: formatted.path } : {}),
      extensions: { code: ErrorCode.SERVICE_UNAVAILABLE },
    };
  }
  // Apollo stamps INTERNAL_SERVER_ERROR on any unexpected error before this hook runs, so
  // that code never passes its message through: it may name hosts, tables or values.
  if (isErrorCode(code) && code !== ErrorCode.INTERNAL_SERVER_ERROR) {
    return { ...formatted, extensions };
  }
  return {
    message: 'Internal server error',
    ...(formatted.path ? { path: formatted.path } : {}),
    extensions: { code: ErrorCode.INTERNAL_SERVER_ERROR },
  };
}

/** Connection-level failures: the database (or another dependency) is down or restarting. */
const unavailableCodes = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', '57P01', '57P02', '57P03', '53300']);

/**
 * True when an error (or anything in its `cause` / `originalError` chain) says a dependency is
 * unreachable rather than that the request was wrong: node errno codes, PostgreSQL class 08
 * (connection exception), admin shutdown / crash (57P0x), too many connections (53300), and
 * node-postgres' own "Connection terminated" errors. A retry later can succeed.
 */
export function isUnavailableDependency(error: unknown): boolean {
  const seen = new Set<unknown>();
  let current: unknown = error;
  while (current && typeof current === 'object' && !seen.has(current)) {
    seen.add(current);
    const { code, message } = current as { code?: unknown; message?: unknown };
    if (typeof code === 'string' && (unavailableCodes.has(code) || /^08[0-9A-Z]{3}$/.test(code))) return true;
    if (typeof message === 'string' && /^Connection terminated|timeout exceeded when trying to connect/.test(message)) return true;
    current = (current as { originalError?: unknown }).originalError ?? (current as { cause?: unknown }).cause;
  }
  return false;
}
