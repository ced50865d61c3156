import type { IncomingMessage } from 'node:http';
import { ErrorCode } from '@ghostpay/platform';

/** The GraphQL parameters of an SSE request, checked: what graphql-sse is handed. */
export interface SseRequestParams {
  /** `''` when the request has none (a persisted-query hash names the operation, or planning refuses it). */
  query: string;
  operationName?: string;
  variables?: Record<string, unknown>;
  extensions?: Record<string, unknown>;
}

/** Why an SSE request is refused before graphql-sse sees it: answered in the router's JSON error envelope. */
export interface SseRequestRefusal {
  status: number;
  code: ErrorCode;
  message: string;
  headers?: Record<string, string>;
}

/**
 * Checks a GraphQL-over-SSE request (distinct connections mode) the way graphql-sse would,
 * but answers every problem with a code from the closed list: graphql-sse answers some with
 * an empty body (404 for an `Accept` that is not exactly `text/event-stream`, 415) and others
 * with a message but no code. `body` is the POST body the router already read and parsed
 * (JSON for a JSON content type, else its text; undefined when empty).
 */
export function readSseRequest(req: IncomingMessage, body: unknown): SseRequestParams | SseRequestRefusal {
  if (req.method !== 'GET' && req.method !== 'POST') {
    return refusal(405, 'Use POST with a JSON body, or GET with query parameters', { allow: 'GET, POST' });
  }
  if (!acceptsEventStream(req.headers.accept)) {
    return refusal(406, 'Subscriptions are streamed: send Accept: text/event-stream');
  }
  let raw: Record<string, unknown>;
  if (req.method === 'GET') {
    const search = new URLSearchParams((req.url ?? '').split('?')[1] ?? '');
    raw = { query: search.get('query') ?? undefined, operationName: search.get('operationName') ?? undefined };
    for (const name of ['variables', 'extensions'] as const) {
      const text = search.get(name);
      if (text === null || text === '') continue;
      try {
        raw[name] = JSON.parse(text);
      } catch {
        return refusal(400, `The ${name} parameter is not valid JSON`);
      }
    }
  } else {
    if (mediaType(req.headers['content-type']) !== 'application/json') {
      return refusal(415, 'Send the request body as application/json', { accept: 'application/json' });
    }
    if (!isObject(body)) return refusal(400, 'The request body must be a JSON object');
    raw = body;
  }
  if (raw.query != null && typeof raw.query !== 'string') return refusal(400, 'query must be a string');
  if (raw.operationName != null && typeof raw.operationName !== 'string') return refusal(400, 'operationName must be a string');
  for (const name of ['variables', 'extensions'] as const) {
    if (raw[name] != null && !isObject(raw[name])) return refusal(400, `${name} must be a JSON object`);
  }
  return {
    query: (raw.query as string | null | undefined) ?? '',
    ...(raw.operationName != null ? { operationName: raw.operationName as string } : {}),
    ...(raw.variables != null ? { variables: raw.variables as Record<string, unknown> } : {}),
    ...(raw.extensions != null ? { extensions: raw.extensions as Record<string, unknown> } : {}),
  };
}

export function isSseRefusal(value: SseRequestParams | SseRequestRefusal): value is SseRequestRefusal {
  return 'status' in value;
}

function refusal(status: number, message: string, headers?: Record<string, string>): SseRequestRefusal {
  return { status, code: ErrorCode.BAD_USER_INPUT, message, ...(headers ? { headers } : {}) };
}

/**
 * True when some media range of the header is `text/event-stream` with a non-zero quality
 * (`text/event-stream; charset=utf-8`, `text/event-stream, application/json` both count).
 */
function acceptsEventStream(accept: string | undefined): boolean {
  if (!accept) return false;
  return accept.split(',').some((range) => {
    const [type, ...parameters] = range.split(';').map((part) => part.trim().toLowerCase());
    return type === 'text/event-stream' && !parameters.some((p) => /^q=0(?:\.0{0,3})?$/.test(p.replace(/\s+/g, '')));
  });
}

/** `application/json; charset=utf-8` → `application/json`. */
function mediaType(header: string | undefined): string {
  return (header ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
