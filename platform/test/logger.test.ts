import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { createSeed, freshDatabase } from '@ghostpay/test-support';
import { describe, expect, it } from 'vitest';
import { createLogger, type Logger } from '../src/index.ts';

/** A logger at `info` whose lines land in `lines` (raw) and `parsed`. */
function capturingLogger(): { logger: Logger; lines: string[]; parsed: () => Record<string, unknown>[] } {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk, _encoding, done) {
      lines.push(String(chunk));
      done();
    },
  });
  return { logger: createLogger({ service: 'test', destination }), lines, parsed: () => lines.map((line) => JSON.parse(line)) };
}

describe('logger', () => {
  it('redacts authorization headers, tokens, API keys, PAN and CVC fields', () => {
    const { logger, lines } = capturingLogger();
    logger.info(
      {
        req: { headers: { authorization: 'Bearer eyJhbGciOi.abc.def' } },
        token: 'tok-secret',
        apiKey: 'gp_live_abcdef',
        card: { pan: '4242424242424242', cvc: '123' },
        variables: { pan: '4000056655665556' },
      },
      'hello',
    );
    const line = lines.join('');
    for (const secret of ['eyJhbGciOi', 'tok-secret', 'gp_live_abcdef', '4242424242424242', '"123"', '4000056655665556']) {
      expect(line).not.toContain(secret);
    }
    expect(JSON.parse(line)).toMatchObject({ service: 'test', msg: 'hello', token: '[redacted]' });
  });

  // Each sensitive key, spelt as clients and libraries spell it, under every kind of nesting.
  const sensitiveKeys = [
    'authorization',
    'Authorization',
    'AUTHORIZATION',
    'proxy-authorization',
    'cookie',
    'Cookie',
    'set-cookie',
    'Set-Cookie',
    'x-api-key',
    'X-API-Key',
    'api_key',
    'apiKey',
    'API_KEY',
    'password',
    'Password',
    'newPassword',
    'password_hash',
    'secret',
    'clientSecret',
    'client_secret',
    'secretHash',
    'token',
    'Token',
    'accessToken',
    'refresh_token',
    'id_token',
    'privateKey',
    'pan',
    'PAN',
    'Pan',
    'cvc',
    'CVC',
    'cvv',
    'cardNumber',
    'card_number',
    'card number',
    'variables',
  ];
  const nestings: Array<[string, (key: string, value: unknown) => unknown]> = [
    ['top level', (key, value) => ({ [key]: value })],
    ['headers', (key, value) => ({ headers: { [key]: value } })],
    ['three levels down', (key, value) => ({ x: { request: { headers: { [key]: value } } } })],
    ['an array of objects', (key, value) => ({ cards: [{ last4: '4242' }, { [key]: value }] })],
    ['arrays in arrays', (key, value) => ({ batches: [[{ ok: true }], [{ input: { card: { [key]: value } } }]] })],
  ];
  const secretValues: Array<[string, (needle: string) => unknown]> = [
    ['a string', (needle) => needle],
    ['a list', (needle) => [`a=${needle}`, 'b=2']],
    ['an object', (needle) => ({ value: needle })],
  ];

  it.each(nestings)('censors every sensitive key, in any case, in %s', (_nesting, nest) => {
    const { logger, lines } = capturingLogger();
    for (const key of sensitiveKeys) {
      for (const [kind, holding] of secretValues) {
        const needle = `s3cr3t${randomBytes(6).toString('hex')}`;
        const logged = nest(key, holding(needle));
        const before = JSON.stringify(logged);
        logger.info(logged as object, 'line');
        const line = lines.pop() ?? '';
        expect(line, `${key} holding ${kind}`).not.toContain(needle);
        expect(line, `${key} holding ${kind}`).toContain('"[redacted]"');
        // The caller's object is not changed.
        expect(JSON.stringify(logged)).toBe(before);
      }
    }
  });

  it('keeps the keys operators need, and values that are not objects', () => {
    const { logger, parsed } = capturingLogger();
    const fields = {
      apiKeyId: 'key_01HZX',
      keyPrefix: 'gp_abc',
      span: 'span-1',
      requestId: 'req-1',
      tokenType: 'Bearer',
      company: 'ACME',
      secrets: ['pan-fingerprint-key'],
      when: new Date('2026-01-31T12:00:00.000Z'),
      headers: { 'content-type': 'application/json', 'x-request-id': 'req-1' },
      codes: ['NOT_FOUND'],
    };
    logger.info(fields, 'kept');
    expect(parsed()[0]).toMatchObject({ ...fields, when: '2026-01-31T12:00:00.000Z' });
  });

  it('censors the bindings of a child logger and survives circular objects', () => {
    const { logger, lines } = capturingLogger();
    const circular: Record<string, unknown> = { name: 'loop', Authorization: 'Bearer loop-secret' };
    circular.self = circular;
    const shared = { apiKey: 'gp_shared_secret' };
    logger.child({ headers: { Cookie: 'session=child-secret' } }).info({ circular, first: shared, second: [shared] }, 'child');
    const line = lines.join('');
    for (const secret of ['child-secret', 'loop-secret', 'shared_secret']) expect(line).not.toContain(secret);
    expect(JSON.parse(line)).toMatchObject({
      circular: { name: 'loop', self: '[Circular]' },
      first: { apiKey: '[redacted]' },
      second: [{ apiKey: '[redacted]' }],
    });
  });

  it('logs a failed query with its SQL and constraint but none of the values bound to it', async () => {
    const database = await freshDatabase();
    try {
      const seed = createSeed(database.db);
      const email = `dup-${randomBytes(4).toString('hex')}@example.test`;
      await seed.user('merchant', { email });
      // A duplicate (case-insensitive unique email), with a free-text name that spans lines and
      // imitates a stack frame, so scrubbing only the first line of the message is not enough.
      const name = `Jane ${randomBytes(4).toString('hex')}\nparams: x\n    at notAFrame (secret.ts:1:1)`;
      const error = await seed.user('merchant', { email: email.toUpperCase(), name }).then(
        () => undefined,
        (failure: unknown) => failure as Error,
      );
      expect(error?.message).toContain('params:'); // drizzle 0.45's DrizzleQueryError, as the services see it
      const id = (error as unknown as { params: unknown[] }).params[0] as string;

      const { logger, lines, parsed } = capturingLogger();
      logger.error({ err: error }, 'unexpected error while executing an operation');
      logger.error(error); // pino takes `msg` from the error's message
      logger.error({ err: error });
      logger.error({ err: error?.cause }, 'the driver error alone'); // pg's DatabaseError: detail quotes the key
      logger.warn({ error, attempt: 1 }, 'an error under another key');
      logger.child({ err: error }).info('bound to a child');

      // Every bound value (id, name, email), in any case; the stored email too (the detail quotes it).
      const text = lines.join('').toLowerCase();
      for (const value of [id, name.slice(0, 'Jane 01234567'.length), 'notAFrame', email]) expect(text).not.toContain(value.toLowerCase());
      const [withMessage, bare, bareInObject, driver, underError] = parsed();
      for (const line of [withMessage, bare, bareInObject, underError]) {
        const err = (line!.err ?? line!.error) as Record<string, unknown>;
        expect(err).not.toHaveProperty('params');
        expect(err.type).toBe('DrizzleQueryError');
        expect(err.message).toContain('insert into "auth"."users"');
        expect(err.message).toContain('violates unique constraint "users_email_lower_key"');
        expect(err.stack).toContain('caused by: error: duplicate key value violates unique constraint "users_email_lower_key"');
      }
      expect(bare!.msg).toContain('insert into "auth"."users"');
      expect(driver!.err).toMatchObject({
        code: '23505',
        constraint: 'users_email_lower_key',
        table: 'users',
        detail: 'Key (lower(email))=([redacted]) already exists.',
      });
    } finally {
      await database.close();
    }
  });
});
