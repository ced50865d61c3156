import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  BodyTooLargeError,
  ClientGoneError,
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

/**
 * Longest API key id and user id accepted. Redaction (`redactRequestEvent`) cuts these fields to
 * their first 100 characters, so two longer ids sharing those would be stored and counted as one
 * key (its usage, its request log). Ids are never cut: a longer one makes the event invalid.
 * Auth's ids (`key_…`, user ids) are far shorter.
 */
export const maxIdLength = 100;

/** How far ahead of this service's clock an event's timestamp may be (clock skew with the router). */
export const maxEventClockSkewMs = 5 * 60_000;

const eventSchema = z.object({
  timestamp: z.iso.datetime({ offset: true }),
  // Ids are never cut (a cut id can equal another one): a longer one makes the event invalid.
  requestId: z.string().max(requestEventLimits.requestId),
  traceId: shortString.nullable(),
  // Any length (the body limit bounds it): redaction cuts it to 200 characters and every query by
  // name cuts the same way, so a long name is still counted and found.
  operationName: z.string().nullable(),
  operationType: z.enum(['query', 'mutation', 'subscription']).nullable(),
  apiKeyId: z.string().max(maxIdLength).nullable(),
  userId: z.string().max(maxIdLength).nullable(),
  role: shortString.nullable(),
  httpStatus: z.number().int().min(0).max(999),
  errorCodes: z.array(shortString).max(100),
  latencyMs: z.number().finite().min(0).max(86_400_000),
  subgraphTimings: z.array(z.object({ subgraph: shortString, ms: z.number().finite().min(0).max(86_400_000) })).max(100),
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
  /**
   * Oldest event accepted, by its timestamp: the log retention. An older event's log would be
   * deleted by the next TTL sweep, so a later retry of it could not be recognised (counted again),
   * and a failed count of its batch could not be recovered from its log.
   */
  maxEventAgeMs: number;
  /** The clock, for tests. @default Date.now */
  now?: () => number;
}

/**
 * `POST /internal/events` with `{ "events": RequestEvent[] }` and `Authorization: Bearer <token>`.
 * Each event is validated and redacted again (the emitter already redacts; this is the second
 * line). Invalid events are skipped and counted, so one bad event never makes the emitter retry
 * a whole batch forever. Answers 200 `{ stored, duplicates, rejected }`, 401 on a bad token,
 * 503 when the token secret is missing or the store fails (the emitter retries).
 */
export function createIngestHandler(options: IngestHandlerOptions) {
  const { store, secrets, logger, maxEvents, maxBytes, maxEventAgeMs } = options;
  const now = options.now ?? Date.now;
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
      if (error instanceof ClientGoneError) {
        // The emitter left mid-body (its timeout, a restart): nobody to answer, and it retries the
        // batch. As platform's server does: a debug line, no answer (not a 400 for "invalid JSON").
        logger.debug('ingest connection closed before the batch was complete; batch dropped');
        res.destroy();
        return;
      }
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
    const at = now();
    for (const item of raw) {
      const parsed = eventSchema.safeParse(item);
      // A timestamp far ahead would be counted in minutes that have not happened yet, and its log
      // would outlive the retention; one older than the retention is gone at the next sweep.
      const timestamp = parsed.success ? Date.parse(parsed.data.timestamp) : Number.NaN;
      if (parsed.success && timestamp <= at + maxEventClockSkewMs && timestamp > at - maxEventAgeMs) {
        // In the router's form (milliseconds, UTC): ISO 8601 allows any number of fractional
        // digits, and a long run of them can pass for a PAN, which redaction drops, and a
        // dropped timestamp is stored as 1970.
        events.push(redactRequestEvent({ ...parsed.data, timestamp: new Date(timestamp).toISOString() }));
      } else {
        rejected++;
      }
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
