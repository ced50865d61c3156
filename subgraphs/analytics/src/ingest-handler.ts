import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  BodyTooLargeError,
  ErrorCode,
  type Logger,
  type RequestEvent,
  readBody,
  redactRequestEvent,
  requestEventLimits,
  type SecretsProvider,
  sendJson,
  z,
} from '@ghostpay/platform';
import type { AnalyticsStore } from './analytics-store.ts';

/** The path the router's emitter posts to. Not part of the GraphQL schema. */
export const ingestPath = '/internal/events';
export const ingestTokenSecret = 'analytics-ingest-token';

const shortString = z.string().max(1000);
const eventSchema = z.object({
  timestamp: z.iso.datetime({ offset: true }),
  // Ids are never cut (a cut id can equal another one): a longer one makes the event invalid.
  requestId: z.string().max(requestEventLimits.requestId),
  traceId: shortString.nullable(),
  // Any length (the body limit bounds it): redaction cuts it to 200 characters and every query by
  // name cuts the same way, so a long name is still counted and found.
  operationName: z.string().nullable(),
  operationType: z.enum(['query', 'mutation', 'subscription']).nullable(),
  apiKeyId: shortString.nullable(),
  userId: shortString.nullable(),
  role: shortString.nullable(),
  httpStatus: z.number().int().min(0).max(999),
  errorCodes: z.array(shortString).max(100),
  latencyMs: z.number().finite().min(0).max(86_400_000),
  subgraphTimings: z.array(z.object({ subgraph: shortString, ms: z.number().finite().min(0) })).max(100),
  eventId: z.string().min(1).max(requestEventLimits.eventId).optional(),
});

/** Hashing both sides first makes the comparison constant-time regardless of length. */
function tokenMatches(presented: string, expected: string): boolean {
  const a = createHash('sha256').update(presented).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

export interface IngestHandlerOptions {
  store: AnalyticsStore;
  secrets: SecretsProvider;
  logger: Logger;
  maxEvents: number;
  maxBytes: number;
}

/**
 * `POST /internal/events` with `{ "events": RequestEvent[] }` and `Authorization: Bearer <token>`.
 * Each event is validated and redacted again (the emitter already redacts; this is the second
 * line). Invalid events are skipped and counted, so one bad event never makes the emitter retry
 * a whole batch forever. Answers 200 `{ stored, duplicates, rejected }`, 401 on a bad token,
 * 503 when the token secret is missing or the store fails (the emitter retries).
 */
export function createIngestHandler(options: IngestHandlerOptions) {
  const { store, secrets, logger, maxEvents, maxBytes } = options;
  return async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    if (req.method !== 'POST') {
      // As the router answers a wrong method: HTTP 405 with Allow, and a code from the closed list.
      sendJson(
        res,
        405,
        { error: { code: ErrorCode.BAD_USER_INPUT, message: `${req.method} is not allowed; use POST` } },
        { allow: 'POST' },
      );
      return;
    }
    const expected = secrets.get(ingestTokenSecret);
    if (!expected) {
      logger.error(`secret ${ingestTokenSecret} is not available; refusing ingest`);
      sendJson(res, 503, { error: { code: 'SERVICE_UNAVAILABLE', message: 'Ingest is not configured' } });
      return;
    }
    const header = req.headers.authorization ?? '';
    const presented = header.startsWith('Bearer ') ? header.slice('Bearer '.length) : '';
    if (!presented || !tokenMatches(presented, expected)) {
      sendJson(res, 401, { error: { code: 'UNAUTHENTICATED', message: 'Invalid ingest token' } }, { 'www-authenticate': 'Bearer' });
      return;
    }
    let body: unknown;
    try {
      body = JSON.parse((await readBody(req, maxBytes)).toString('utf8'));
    } catch (error) {
      if (error instanceof BodyTooLargeError) {
        // The rest of the body is not worth reading: the socket closes after the 413.
        res.setHeader('connection', 'close');
        sendJson(res, 413, { error: { code: 'PAYLOAD_TOO_LARGE', message: error.message } });
        return;
      }
      sendJson(res, 400, { error: { code: 'BAD_USER_INPUT', message: 'Body is not valid JSON' } });
      return;
    }
    const raw = (body as { events?: unknown } | null)?.events;
    if (!Array.isArray(raw) || raw.length > maxEvents) {
      sendJson(res, 400, { error: { code: 'BAD_USER_INPUT', message: `Expected { events: [...] } with at most ${maxEvents} events` } });
      return;
    }
    const events: RequestEvent[] = [];
    let rejected = 0;
    for (const item of raw) {
      const parsed = eventSchema.safeParse(item);
      if (parsed.success) events.push(redactRequestEvent(parsed.data));
      else rejected++;
    }
    if (rejected > 0) logger.warn({ rejected }, 'ingest skipped invalid events');
    try {
      const result = await store.ingest(events);
      sendJson(res, 200, { ...result, rejected });
    } catch (error) {
      logger.error({ err: (error as Error).message }, 'ingest failed to store a batch');
      sendJson(res, 503, { error: { code: 'SERVICE_UNAVAILABLE', message: 'Store unavailable; retry' } });
    }
  };
}
