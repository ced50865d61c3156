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

/** The trace id of a W3C `traceparent` header, if well formed. */
export function traceIdOf(traceparent: string | undefined): string | undefined {
  const match = traceparent ? /^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$/.exec(traceparent.trim()) : null;
  return match?.[1];
}
