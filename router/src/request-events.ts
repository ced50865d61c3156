import { looksSecret, type RequestEvent, wellFormedTraceparent } from '@ghostpay/platform';

/**
 * What the router reports about each GraphQL request to the analytics emitter. Never
 * variables, tokens, or response data: only identifiers and measurements.
 */
export interface RouterRequestEvent {
  requestId: string;
  traceId?: string;
  operationName?: string;
  operationType?: string;
  apiKeyId?: string;
  userId?: string;
  role?: string;
  httpStatus: number;
  errorCodes: string[];
  latencyMs: number;
  subgraphTimings: { subgraph: string; ms: number; outcome: string }[];
  /** ISO-8601 instant the request arrived. */
  receivedAt: string;
}

export type RequestEventHandler = (event: RouterRequestEvent) => void;

/**
 * Hands the event over after the response is written, on a later tick, so a slow or failing
 * handler can never delay or fail the request.
 */
export function emitRequestEvent(handler: RequestEventHandler | undefined, event: RouterRequestEvent, onError: (error: unknown) => void) {
  if (!handler) return;
  setImmediate(() => {
    try {
      const result = handler(event) as unknown;
      if (result && typeof (result as Promise<unknown>).catch === 'function') (result as Promise<unknown>).catch(onError);
    } catch (error) {
      onError(error);
    }
  });
}

/**
 * The trace id of a W3C `traceparent` header, if well formed by the rule the router and the
 * bridge forward by (platform's `wellFormedTraceparent`): an id a trace could really have, not an
 * all-zero one, or one from a version-ff or upper-case header.
 */
export function traceIdOf(traceparent: string | undefined): string | undefined {
  return wellFormedTraceparent(traceparent)?.slice(3, 35);
}

/**
 * An id a request event may carry (its trace id, its request id). One the router made up is
 * random; one the caller chose (`callerChosen`: the trace id of the `traceparent` it sent, its
 * `x-request-id`) is the caller's text, so it goes only if it holds nothing that looks like a
 * PAN. Analytics keeps ids in the formats the router makes (W3C trace ids, UUIDs) whatever
 * digits they hold: `redactRequestEvent`.
 */
export function callerSafeId(id: string | undefined, callerChosen: string | undefined): string | undefined {
  return id !== undefined && id === callerChosen && looksSecret(id) ? undefined : id;
}

const operationTypes = new Set(['query', 'mutation', 'subscription']);

/** The router's event in the analytics ingest shape (what the analytics emitter sends). */
export function toAnalyticsRequestEvent(event: RouterRequestEvent): RequestEvent {
  return {
    timestamp: event.receivedAt,
    requestId: event.requestId,
    traceId: event.traceId ?? null,
    operationName: event.operationName ?? null,
    operationType: operationTypes.has(event.operationType ?? '') ? (event.operationType as RequestEvent['operationType']) : null,
    apiKeyId: event.apiKeyId ?? null,
    userId: event.userId ?? null,
    role: event.role ?? null,
    httpStatus: event.httpStatus,
    errorCodes: event.errorCodes,
    latencyMs: event.latencyMs,
    subgraphTimings: event.subgraphTimings.map(({ subgraph, ms }) => ({ subgraph, ms })),
  };
}
