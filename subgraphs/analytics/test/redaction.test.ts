import { boundOperationName, looksSecret, luhnValid, type RequestEvent, redactRequestEvent, requestEventLimits } from '@ghostpay/platform';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

const base62 = '0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ';
const base64url = `${base62}-_`;
const charsOf = (alphabet: string, min: number, max: number) =>
  fc.array(fc.constantFrom(...alphabet.split('')), { minLength: min, maxLength: max }).map((a) => a.join(''));

/**
 * A Luhn-valid PAN of 13–19 digits, printed plain or in groups of four separated by spaces,
 * dashes, underscores or dots (`Pay_4111_1111_1111_1111` as an operation name).
 */
const pan = fc
  .tuple(
    fc.integer({ min: 13, max: 19 }),
    fc.array(fc.integer({ min: 0, max: 9 }), { minLength: 18, maxLength: 18 }),
    fc.constantFrom('', ' ', '-', '_', '.'),
  )
  .map(([length, digits, separator]) => {
    const body = digits.slice(0, length - 1).join('');
    const check = [...Array(10).keys()].find((d) => luhnValid(`${body}${d}`))!;
    const plain = `${body}${check}`;
    return { plain, printed: separator ? plain.replace(/(\d{4})(?=\d)/g, `$1${separator}`) : plain };
  });

const jwt = fc
  .tuple(charsOf(base64url, 10, 60), charsOf(base64url, 10, 200), charsOf(base64url, 20, 90))
  .map(([header, payload, signature]) => `eyJ${header}.eyJ${payload}.${signature}`);

const apiKey = fc.tuple(charsOf(base62, 12, 12), charsOf(base62, 43, 43)).map(([prefix, secret]) => `gp_${prefix}_${secret}`);

const secret = fc.oneof(
  pan.map((p) => ({ kind: 'pan' as const, printed: p.printed, needle: p.plain })),
  jwt.map((t) => ({ kind: 'jwt' as const, printed: t, needle: t })),
  apiKey.map((k) => ({ kind: 'key' as const, printed: k, needle: k })),
);

const text = fc.string({ maxLength: 30 });
const event: fc.Arbitrary<RequestEvent> = fc.record({
  timestamp: fc.date({ min: new Date('2020-01-01'), max: new Date('2030-01-01'), noInvalidDate: true }).map((d) => d.toISOString()),
  requestId: text,
  traceId: fc.option(text),
  operationName: fc.option(text),
  operationType: fc.constantFrom('query', 'mutation', 'subscription', null),
  apiKeyId: fc.option(text),
  userId: fc.option(text),
  role: fc.option(text),
  httpStatus: fc.integer({ min: 100, max: 599 }),
  errorCodes: fc.array(text, { maxLength: 3 }),
  latencyMs: fc.double({ min: 0, max: 60_000, noNaN: true }),
  subgraphTimings: fc.array(fc.record({ subgraph: text, ms: fc.double({ min: 0, max: 1000, noNaN: true }) }), { maxLength: 3 }),
});

const stringFields = ['requestId', 'traceId', 'operationName', 'apiKeyId', 'userId', 'role', 'errorCodes', 'subgraphTimings'] as const;

/** Puts `value` into one string of the event, between random text. */
function plant(target: RequestEvent, field: (typeof stringFields)[number], value: string): RequestEvent {
  const e = structuredClone(target);
  if (field === 'errorCodes') e.errorCodes = [...e.errorCodes, value];
  else if (field === 'subgraphTimings') e.subgraphTimings = [...e.subgraphTimings, { subgraph: value, ms: 1 }];
  else e[field] = value;
  return e;
}

function strings(value: unknown): string[] {
  if (typeof value === 'string') return [value];
  if (Array.isArray(value)) return value.flatMap(strings);
  if (value && typeof value === 'object') return Object.values(value).flatMap(strings);
  return [];
}

describe('request event redaction', () => {
  it('lets no planted PAN, JWT or API key survive, wherever it is hidden', () => {
    fc.assert(
      fc.property(
        event,
        fc.array(fc.tuple(fc.constantFrom(...stringFields), secret, fc.string({ maxLength: 20 }), fc.string({ maxLength: 20 })), {
          minLength: 1,
          maxLength: 4,
        }),
        (base, plants) => {
          let e = base;
          for (const [field, s, before, after] of plants) e = plant(e, field, `${before}${s.printed}${after}`);
          // Fields the router must never send are dropped whole, secret or not.
          const withExtras = { ...e, variables: { pan: plants[0]![1].printed }, authorization: `Bearer ${plants[0]![1].printed}` };
          const redacted = redactRequestEvent(withExtras as RequestEvent);
          const out = strings(redacted);
          for (const [, s] of plants) {
            for (const value of out) {
              const haystack = s.kind === 'pan' ? value.replace(/[ _.-]/g, '') : value;
              expect(haystack.includes(s.needle)).toBe(false);
            }
          }
          expect(Object.keys(redacted)).not.toContain('variables');
          expect(Object.keys(redacted)).not.toContain('authorization');
        },
      ),
      { numRuns: 500 },
    );
  });

  it('keeps ordinary values unchanged', () => {
    // Ordinary: not API-key-like. The pattern can spell `GP_` + 8 key characters (e.g. `GP_AA___AAA`),
    // which redaction drops on purpose, as a truncated API key.
    const word = fc.stringMatching(/^[A-Za-z][A-Za-z0-9]{0,3}[A-Za-z_]{0,30}$/).filter((w) => !/gp_/i.test(w));
    fc.assert(
      fc.property(
        event,
        word,
        word,
        fc.array(fc.constantFrom('NOT_FOUND', 'RATE_LIMITED', 'FORBIDDEN'), { maxLength: 3 }),
        (base, name, user, codes) => {
          const e = {
            ...base,
            requestId: 'req_abc123',
            operationName: name,
            userId: user,
            errorCodes: codes,
            subgraphTimings: [{ subgraph: 'cards', ms: 3 }],
          };
          const redacted = redactRequestEvent(e);
          expect(redacted.operationName).toBe(name);
          expect(redacted.userId).toBe(user);
          expect(redacted.errorCodes).toEqual(codes);
          expect(redacted.requestId).toBe('req_abc123');
          expect(redacted.subgraphTimings).toEqual([{ subgraph: 'cards', ms: 3 }]);
          expect(redacted.timestamp).toBe(base.timestamp);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('keeps a W3C trace id whatever digits it holds, and nothing else in that field', () => {
    // A real trace id from CI whose digits hold a Luhn-valid 15-digit run (926055547748569):
    // the PAN check flags it, and it was dropped before (0.65% of random trace ids are).
    const flagged = '33c23a3968570d926055547748569a80';
    expect(looksSecret(flagged)).toBe(true);
    const eventWith = (traceId: unknown) =>
      ({ timestamp: '2026-11-22T00:00:00.000Z', requestId: 'req_1', traceId }) as unknown as RequestEvent;
    expect(redactRequestEvent(eventWith(flagged)).traceId).toBe(flagged);
    fc.assert(
      fc.property(charsOf('0123456789abcdef', 32, 32), (id) => {
        expect(redactRequestEvent(eventWith(id)).traceId).toBe(/^0{32}$/.test(id) ? null : id);
      }),
      { numRuns: 2_000 },
    );
    for (const notAnId of [
      flagged.toUpperCase(),
      flagged.slice(1),
      `${flagged}0`,
      '0'.repeat(32),
      'card 4111 1111 1111 1111',
      'not-a-trace-id',
      42,
    ]) {
      expect(redactRequestEvent(eventWith(notAnId)).traceId, String(notAnId)).toBeNull();
    }
  });

  it('keeps request and event ids in UUID form whatever digits they hold, and checks any other id as text', () => {
    // 0.72% of random UUIDs hold a Luhn-valid run (here 0407035 after 9707-…): an event whose
    // event id was dropped at ingest was no longer deduplicated there.
    const flagged = '26c41588-1653-4975-9707-0407035bfa3c';
    expect(looksSecret(flagged)).toBe(true);
    const ids = (requestId: string, eventId: string) =>
      redactRequestEvent({ timestamp: '2026-11-22T00:00:00.000Z', requestId, traceId: null, eventId } as unknown as RequestEvent);
    expect(ids(flagged, flagged)).toMatchObject({ requestId: flagged, eventId: flagged });
    fc.assert(
      fc.property(fc.uuid(), fc.uuid(), (requestId, eventId) => {
        expect(ids(requestId, eventId)).toMatchObject({ requestId, eventId });
      }),
      { numRuns: 2_000 },
    );
    // Not a UUID: the text checks apply, as for every other field.
    expect(ids('req-4111111111111111', 'evt-4111-1111-1111-1111')).toMatchObject({ requestId: '[redacted]' });
    expect(ids('req-4111111111111111', 'evt-4111-1111-1111-1111').eventId).toBeUndefined();
  });

  it('drops an id longer than its limit instead of cutting it into another id', () => {
    const ids = (requestId: string, eventId: string) =>
      redactRequestEvent({ timestamp: '2026-11-22T00:00:00.000Z', requestId, traceId: null, eventId } as unknown as RequestEvent);
    const prefix = 'e'.repeat(requestEventLimits.eventId);
    // Cut to 100, `${prefix}A` and `${prefix}B` were the same event id.
    expect(ids('req_1', `${prefix}A`).eventId).toBeUndefined();
    expect(ids('req_1', prefix).eventId).toBe(prefix);
    // The router accepts x-request-id up to 128 characters: kept whole, not cut to 100.
    const requestId = 'r'.repeat(requestEventLimits.requestId);
    expect(ids(requestId, prefix).requestId).toBe(requestId);
    expect(ids(`${requestId}r`, prefix).requestId).toBe('[redacted]');
  });

  it('cuts an operation name to 200 characters, never inside a surrogate pair', () => {
    const name = (operationName: string) =>
      redactRequestEvent({
        timestamp: '2026-11-22T00:00:00.000Z',
        requestId: 'req_1',
        traceId: null,
        operationName,
      } as unknown as RequestEvent).operationName;
    const long = `Op${'x'.repeat(249)}`;
    expect(name(long)).toMatch(new RegExp(`^${long.slice(0, 183)}~[A-Za-z0-9_-]{16}$`));
    expect(name(long)).toBe(boundOperationName(long));
    expect(name(long)).toHaveLength(200);
    // Bounded once is bounded: the emitter, ingest and the queries may each apply it.
    expect(boundOperationName(name(long)!)).toBe(name(long));
    expect(name('x'.repeat(200))).toBe('x'.repeat(200));
    // Two long names that share their first 183 characters (or all 200 the old cut kept) stay two.
    const other = `Op${'x'.repeat(248)}y`;
    expect(boundOperationName(other)).not.toBe(boundOperationName(long));
    expect(boundOperationName(other).slice(0, 183)).toBe(boundOperationName(long).slice(0, 183));
    // 182 units then a 2-unit emoji: cutting at 183 would leave half of it.
    const emoji = `${'x'.repeat(182)}\u{1F4B3}${'t'.repeat(40)}`;
    expect(name(emoji)).toMatch(/^x{182}~[A-Za-z0-9_-]{16}$/);
    expect(boundOperationName(emoji)).toBe(name(emoji));
  });

  it('recognises the shapes it is meant to catch and not ids or timestamps', () => {
    expect(looksSecret('4111111111111111')).toBe(true);
    expect(looksSecret('card 4111-1111-1111-1111 declined')).toBe(true);
    expect(looksSecret('query Pay_4111_1111_1111_1111')).toBe(true);
    expect(looksSecret('card.4111.1111.1111.1111')).toBe(true);
    // 13 digits failing Luhn, and 12 digits: not a PAN. (Longer digit runs usually hold some
    // Luhn-valid 13–19 digit window and are dropped: deliberately generous.)
    expect(looksSecret('1234567890123')).toBe(false);
    expect(looksSecret('411111111111')).toBe(false);
    expect(looksSecret('eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.sig')).toBe(true);
    expect(looksSecret('gp_abcdefghijkl_0123456789abcdefghijklmnopqrstuvwxyzABCDEFG')).toBe(true);
    expect(looksSecret('Bearer abc.def.ghi.jkl')).toBe(true);
    expect(looksSecret('key_01HZX3J8Q2')).toBe(false);
    expect(looksSecret('2026-11-21T23:23:04.000Z')).toBe(false);
    expect(looksSecret('CreateCard')).toBe(false);
  });
});
