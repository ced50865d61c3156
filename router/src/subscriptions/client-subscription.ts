import { ErrorCode, GhostPayError } from '@ghostpay/platform';
import type { DocumentNode, ExecutionResult, FormattedExecutionResult, GraphQLError, GraphQLFormattedError } from 'graphql';
import type { Logger } from 'pino';
import { createEventStream, type EventStream } from './event-stream.ts';
import type { SubscriptionPlan } from './subscription-plan.ts';
import type { UpstreamAttachment, UpstreamPool } from './upstream-pool.ts';

/** A GraphQL result as the transports send it. */
export type SubscriptionPayload = FormattedExecutionResult & { extensions?: Record<string, unknown> };

/**
 * Runs an operation through the router's gateway (auth directives, limits, query plan) as
 * the caller whose `Authorization` header value is given. Supplied by the router.
 */
export type ExecuteQuery = (request: {
  query: string;
  document: DocumentNode;
  variables: Record<string, unknown>;
  operationName?: string;
  authorization: string;
}) => Promise<ExecutionResult | FormattedExecutionResult>;

/** A re-read that could not be resolved is retried after this long, doubling up to `maxRetryDelayMs`. */
const firstRetryDelayMs = 1_000;
const maxRetryDelayMs = 30_000;

/** Codes on the root field that mean "this caller may not watch this": refuse or end. */
const refusalCodes = new Set<string>([ErrorCode.NOT_FOUND, ErrorCode.FORBIDDEN, ErrorCode.UNAUTHENTICATED, ErrorCode.BAD_USER_INPUT]);

/**
 * What one per-event re-read came to (never the first query, which is the subscribe's answer):
 * - `sent`: it resolved and its payload went to the client;
 * - `unchanged`: it resolved to the payload last sent, so nothing was sent;
 * - `failed`: it could not be resolved (the root field null: a subgraph down, a timeout): the
 *   client got the errors (an identical retry sends nothing again) and it is retried;
 * - `ended`: it refused (access revoked, …): a last payload with that error ended the subscription;
 * - `abandoned`: the subscription ended while it ran, nothing was sent.
 */
export const eventReadOutcomes = ['sent', 'unchanged', 'failed', 'ended', 'abandoned'] as const;
export type EventReadOutcome = (typeof eventReadOutcomes)[number];

/** One per-event re-read, for the router's metrics. */
export interface EventRead {
  outcome: EventReadOutcome;
  /** How long the re-read took. */
  seconds: number;
}

export interface OpenedSubscription {
  stream: EventStream<SubscriptionPayload>;
  /** The first payload (already in `stream`): the charge when the subscription started. */
  first: SubscriptionPayload;
}

export interface OpenSubscriptionOptions {
  plan: SubscriptionPlan;
  authorization: string;
  pool: UpstreamPool;
  executeQuery: ExecuteQuery;
  logger: Logger;
  /** Called once when the stream ends, however it ends. */
  onEnd: () => void;
  /** Told after each per-event re-read (not the first query). Must not throw. */
  onEventRead?: (read: EventRead) => void;
  /**
   * Told the error codes of each payload with errors sent after the first one (a re-read's, a last
   * payload ending the subscription): errors returned to the client, once each, however many
   * identical retries were not sent again. The first payload's are the subscribe's answer. Must not throw.
   */
  onErrorsSent?: (codes: string[]) => void;
}

/**
 * One client's subscription. The client's query runs once before anything is opened
 * upstream: a caller who may not read the charge is refused here and costs no upstream
 * subscription. Then it joins the shared upstream subscription, and every upstream event
 * re-runs the query with the client's own token. Re-runs are serialised and coalesced (a
 * burst of events costs one query while one is running), and a payload equal to the last
 * one sent is not sent again — except the one after an upstream outage or after an event
 * that could not be resolved (sent as a payload with `errors`; the subscription goes on),
 * which carries `extensions.missedEvents: true`. A re-read that could not be resolved is
 * retried on a backoff (1 s doubling to 30 s) until one resolves or the stream ends: the
 * event it missed may be the charge's last.
 */
export async function openClientSubscription(options: OpenSubscriptionOptions): Promise<OpenedSubscription | readonly GraphQLError[]> {
  const { plan, pool, executeQuery, logger } = options;
  const before = pool.peek(plan.upstreamKey);
  const seqBefore = before?.seq;

  const run = async () =>
    toFormatted(
      await executeQuery({
        query: plan.queryText,
        document: plan.query,
        variables: plan.variables,
        operationName: plan.operationName,
        authorization: options.authorization,
      }),
    );

  let first: SubscriptionPayload;
  try {
    first = await run();
  } catch (error) {
    logger.error({ err: error }, 'subscription authorization query failed');
    return [new GhostPayError(ErrorCode.SERVICE_UNAVAILABLE, 'Could not start the subscription; retry later')];
  }
  const refusal = refusalOf(first, plan.responseKey, true);
  if (refusal) return [refusal];

  let attachment: UpstreamAttachment | undefined;
  let lastSent = '';
  let running = false;
  let pending = false;
  let pendingMissed = false;
  let owedMissed = false;
  /** The upstream reported the entity's last state: the next payload that resolves is the last. */
  let finalSeen = false;
  let retryTimer: NodeJS.Timeout | undefined;
  let retryDelay = firstRetryDelayMs;
  const stream = createEventStream<SubscriptionPayload>(() => {
    logger.debug({ upstreamKey: plan.upstreamKey }, 'client subscription ended');
    clearTimeout(retryTimer);
    attachment?.detach();
    options.onEnd();
  });

  /** Pushes a payload unless it equals the last one sent; whether it was sent. */
  const send = (payload: SubscriptionPayload, missedEvents: boolean): boolean => {
    const text = JSON.stringify(payload);
    if (text === lastSent && !missedEvents) return false;
    lastSent = text;
    stream.push(missedEvents ? { ...payload, extensions: { ...payload.extensions, missedEvents: true } } : payload);
    return true;
  };
  /** A payload after the first went out: its errors are errors returned to the client. */
  const sentLater = (payload: SubscriptionPayload) => {
    if (payload.errors && payload.errors.length > 0) options.onErrorsSent?.(codesOf(payload.errors));
  };
  /** Ends the stream with a last payload (holding errors), counted as sent. */
  const endWith = (last: SubscriptionPayload) => {
    if (stream.ended) return;
    sentLater(last);
    stream.end(last);
  };

  const refresh = async (missedEvents: boolean, final = false) => {
    pendingMissed ||= missedEvents;
    finalSeen ||= final;
    if (running) {
      pending = true;
      return;
    }
    running = true;
    try {
      do {
        pending = false;
        const missed = pendingMissed;
        pendingMissed = false;
        // Only a read that starts after the upstream reported the last state reads that state;
        // one already in flight then may resolve the state before it (`pending` re-reads).
        const lastRead = finalSeen;
        if (stream.ended) return;
        const readStarted = performance.now();
        const read = (outcome: EventReadOutcome) => options.onEventRead?.({ outcome, seconds: (performance.now() - readStarted) / 1000 });
        let payload: SubscriptionPayload;
        try {
          payload = await run();
        } catch (error) {
          logger.warn({ err: error }, 'subscription event query failed');
          payload = { errors: [{ message: 'Could not resolve this event', extensions: { code: ErrorCode.SERVICE_UNAVAILABLE } }] };
        }
        if (stream.ended) {
          read('abandoned');
          return;
        }
        const ended = refusalOf(payload, plan.responseKey, false);
        if (ended) {
          logger.debug({ code: ended.extensions.code, message: ended.message }, 'subscription ended by its event query');
          read('ended');
          endWith({ errors: [ended.toJSON()] });
          return;
        }
        clearTimeout(retryTimer);
        retryTimer = undefined;
        if (payload.data?.[plan.responseKey] == null) {
          // The event could not be resolved (a subgraph down, a timeout): the client gets the
          // errors, and the next payload that resolves says events may have been missed. That
          // event may have been the charge's last, so the re-read is retried until it resolves.
          owedMissed = true;
          if (send(payload, false)) sentLater(payload);
          read('failed');
          retryTimer = setTimeout(() => void refresh(false), retryDelay);
          retryTimer.unref();
          retryDelay = Math.min(maxRetryDelayMs, retryDelay * 2);
        } else {
          if (send(payload, missed || owedMissed)) {
            sentLater(payload);
            read('sent');
          } else {
            read('unchanged');
          }
          owedMissed = false;
          retryDelay = firstRetryDelayMs;
          // The entity's last state is what the client holds now (this re-read started after the
          // upstream reported it): nothing more will come, so the subscription completes.
          if (lastRead) {
            logger.debug({ upstreamKey: plan.upstreamKey }, 'client subscription complete: final state sent');
            stream.end();
            return;
          }
        }
      } while (pending);
    } finally {
      running = false;
    }
  };

  send(first, false);
  attachment = options.pool.attach(
    {
      subgraph: plan.route.subgraph,
      key: plan.upstreamKey,
      query: plan.upstreamQuery,
      variables: plan.upstreamVariables,
      isFinal: plan.route.isFinal,
    },
    {
      event: (missed, final) => void refresh(missed, final),
      // Not the upstream's message: it answered the router's service account, not this client.
      refused: (refusal) =>
        endWith({
          errors: [{ message: 'The live event source ended this subscription', extensions: { code: refusal.extensions?.code } }],
        }),
    },
  );
  // Anything that happened upstream between our first query and joining would otherwise be
  // lost: if the shared subscription saw events meanwhile (or is another one), re-read now.
  // A subscription that is not live yet sends its first event when it is, which re-reads too.
  // A shared subscription that already reported the last state sends no other event: re-read
  // now (the state may have become final during the first query) and complete.
  const now = attachment.subscription;
  if (now.final) void refresh(false, true);
  else if (now.live && (now !== before || now.seq !== seqBefore)) void refresh(false);
  return { stream, first };
}

const codesOf = (errors: readonly GraphQLFormattedError[]): string[] =>
  errors.map((e) => String(e.extensions?.code ?? ErrorCode.INTERNAL_SERVER_ERROR));

function toFormatted(result: ExecutionResult | FormattedExecutionResult): SubscriptionPayload {
  const errors = result.errors?.map((e) => ('toJSON' in e && typeof e.toJSON === 'function' ? e.toJSON() : (e as GraphQLFormattedError)));
  return {
    ...(result.data !== undefined ? { data: result.data as Record<string, unknown> | null } : {}),
    ...(errors && errors.length > 0 ? { errors } : {}),
    ...(result.extensions ? { extensions: result.extensions as Record<string, unknown> } : {}),
  };
}

/**
 * A refusal: the root field is null and an error says the caller may not see it (or, for the
 * first query, any error left the root field null: nothing to subscribe to).
 */
function refusalOf(payload: SubscriptionPayload, responseKey: string, strict: boolean): GhostPayError | undefined {
  const value = payload.data?.[responseKey];
  if (value != null) return undefined;
  const errors = payload.errors ?? [];
  const refusing = errors.find((e) => refusalCodes.has(String(e.extensions?.code)));
  const chosen = refusing ?? (strict ? errors[0] : undefined);
  if (!chosen && !strict) return undefined;
  const code = String(chosen?.extensions?.code ?? ErrorCode.INTERNAL_SERVER_ERROR);
  const known = (Object.values(ErrorCode) as string[]).includes(code) ? (code as ErrorCode) : ErrorCode.INTERNAL_SERVER_ERROR;
  return new GhostPayError(known, chosen?.message ?? 'Subscription refused');
}
