import { randomBytes, randomUUID } from 'node:crypto';
import { capturingLogger, createSeed, freshDatabase } from '@ghostpay/test-support';
import { sql } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import type { Logger } from '../src/index.ts';

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
    // Plurals and variants.
    'tokens',
    'refreshTokens',
    'apiKeys',
    'api_keys',
    'cookies',
    'secrets',
    'secretKey',
    'secret_key',
    'signingKey',
    'signing_keys',
    'cardPan',
    'card_pan',
    'jwt',
    'JWT',
    'idJwt',
    'credential',
    'credentials',
    'awsCredentials',
    'passwords',
    // The cards service's key material.
    'encryptionKeys',
    'encryption_key',
    'fingerprintKey',
    'cvcKey',
    'cvc-key',
    'panKey',
    'masterKey',
    'dataKey',
    'kek',
    'KEKs',
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
      secretName: 'pan-encryption-keys',
      secretNames: ['pan-fingerprint-key'],
      credentialId: 'cred_1',
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

  it('says how many values were bound to a failed drizzle query, in its message and stack, wherever it is on the cause chain', async () => {
    const database = await freshDatabase();
    try {
      const seed = createSeed(database.db);
      const email = `count-${randomBytes(4).toString('hex')}@example.test`;
      await seed.user('merchant', { email });
      const error = await seed.user('merchant', { email }).then(
        () => undefined,
        (failure: unknown) => failure as Error & { query: string; params: unknown[] },
      );
      expect(error?.constructor.name).toBe('DrizzleQueryError');
      const { query, params } = error!;
      const placeholder = `Failed query: ${query}\nparams: [redacted ${params.length}]`;

      // The same error from another copy of drizzle (instanceof would miss it), and one that lost
      // its class (structured clone, a worker): recognised by name or by their own query and params.
      const DrizzleQueryError = class DrizzleQueryError extends Error {
        readonly query: string;
        readonly params: unknown[];
        constructor(query: string, params: unknown[], cause?: unknown) {
          super(`Failed query: ${query}\nparams: ${params}`, { cause });
          this.query = query;
          this.params = params;
        }
      };
      const copy = new DrizzleQueryError(query, params, error!.cause);
      const classless = Object.assign(new Error(error!.message, { cause: error!.cause }), { query, params });
      const wrapped = new Error('creating the user failed', { cause: error });

      const { logger, lines, parsed } = capturingLogger();
      for (const err of [error, copy, classless]) logger.error({ err }, 'failed');
      logger.error({ err: wrapped }, 'wrapped');
      const text = lines.join('').toLowerCase();
      expect(text).not.toContain(email);
      for (const value of params) expect(text).not.toContain(String(value).toLowerCase());
      const [direct, fromCopy, fromClassless, fromWrapper] = parsed().map((line) => line.err as Record<string, unknown>);
      for (const err of [direct, fromCopy, fromClassless]) {
        expect(err!.message).toMatch(new RegExp(`^${escapeRegExp(placeholder)}: duplicate key value`));
        expect(err!.stack).toContain(placeholder);
        expect(err!.query).toBe(query);
        expect(err).not.toHaveProperty('params');
      }
      expect(fromWrapper!.message).toContain(`creating the user failed: ${placeholder}: duplicate key value`);
      expect(fromWrapper!.stack).toContain(`caused by: Error: ${placeholder}\n`);
    } finally {
      await database.close();
    }
  });

  it('logs a database error with its code, constraint and routine, but none of the fields that quote values', async () => {
    const database = await freshDatabase();
    try {
      const { db } = database;
      const secret = () => `s3cr3t${randomBytes(4).toString('hex')}`;
      const failureOf = (query: Promise<unknown>) =>
        query.then(
          () => {
            throw new Error('expected the query to fail');
          },
          (failure: unknown) => failure as Error & { cause: Record<string, unknown> },
        );
      await db.execute(
        sql.raw(`create function public.log_probe_raise(t text) returns int language plpgsql as $f$
          begin raise exception 'log probe failed' using detail = t, hint = t; end $f$`),
      );
      await db.execute(
        sql.raw(`create function public.log_probe_execute(t text) returns int language plpgsql as $f$
          begin execute format('select %L::int', t); return 0; end $f$`),
      );
      const raised = secret();
      const executed = secret();
      const jsonValue = secret();
      const jsonToken = `tok${randomBytes(4).toString('hex')}`;
      const failures = [
        // detail and hint set by a function (RAISE … USING), where names the function.
        await failureOf(db.execute(sql`select public.log_probe_raise(${raised})`)),
        // internalQuery: the statement a function ran, with the value inlined.
        await failureOf(db.execute(sql`select public.log_probe_execute(${executed})`)),
        // detail `Token "…" is invalid.`, where `JSON data, line 1: {"email": "…`.
        await failureOf(db.execute(sql`select ${`{"email": "${jsonValue}", ${jsonToken}}`}::jsonb`)),
      ];
      const causes = failures.map((failure) => failure.cause);
      // Each of them carries the value in the field under test, so the test shows it is dropped.
      expect(causes[0]).toMatchObject({ detail: raised, hint: raised, where: expect.stringContaining('log_probe_raise') });
      expect(causes[1]).toMatchObject({ internalQuery: expect.stringContaining(executed) });
      expect(causes[2]).toMatchObject({ detail: expect.stringContaining(jsonToken), where: expect.stringContaining(jsonValue) });

      const { logger, lines, parsed } = capturingLogger();
      for (const cause of causes) logger.error({ err: cause }, 'the driver error');
      for (const failure of failures) logger.error({ err: failure }, 'the drizzle error');
      const text = lines.join('');
      for (const value of [raised, executed, jsonValue, jsonToken]) expect(text).not.toContain(value);
      const driverErrors = parsed()
        .slice(0, causes.length)
        .map((line) => line.err as Record<string, unknown>);
      for (const [i, err] of driverErrors.entries()) {
        expect(err).toMatchObject({ code: causes[i]!.code, routine: causes[i]!.routine, severity: 'ERROR' });
        for (const key of ['hint', 'where', 'internalQuery', 'params', 'queryOptions']) expect(err).not.toHaveProperty(key);
      }
      // A detail with no value-free shape (not a constraint violation's) is censored whole.
      expect(driverErrors.map((err) => err.detail)).toEqual(['[redacted]', undefined, '[redacted]']);
    } finally {
      await database.close();
    }
  });

  it("logs a function's RAISE message without the data it interpolated, keeping its words", async () => {
    const database = await freshDatabase();
    try {
      const { db } = database;
      await db.execute(
        sql.raw(`create function public.log_probe_interpolate(id text, pan text, email text, blob text) returns int
          language plpgsql as $f$ begin raise exception 'refusing card % (pan %, owner %): ciphertext %', id, pan, email, blob; end $f$`),
      );
      await db.execute(
        sql.raw(`create function public.log_probe_assert(pan text) returns int
          language plpgsql as $f$ begin assert false, format('card %s failed the check', pan); return 0; end $f$`),
      );
      const id = randomUUID();
      const pan = '4111111111111111';
      const email = `jane.${randomBytes(3).toString('hex')}@example.test`;
      const blob = randomBytes(24).toString('base64');
      const raised = await db.execute(sql`select public.log_probe_interpolate(${id}, ${pan}, ${email}, ${blob})`).then(
        () => expect.unreachable(),
        (failure: unknown) => failure as Error & { cause: Error & Record<string, unknown> },
      );
      const asserted = await db.execute(sql`select public.log_probe_assert(${pan})`).then(
        () => expect.unreachable(),
        (failure: unknown) => failure as Error & { cause: Error & Record<string, unknown> },
      );
      // The driver's message carries every value, so the test shows they are taken out.
      expect(raised.cause.message).toContain(pan);
      expect(raised.cause).toMatchObject({ code: 'P0001', routine: 'exec_stmt_raise' });
      expect(asserted.cause).toMatchObject({ code: 'P0004', routine: 'exec_stmt_assert' });

      const { logger, lines, parsed } = capturingLogger();
      for (const failure of [raised, asserted]) {
        logger.error({ err: failure.cause }, 'the driver error');
        logger.error({ err: failure }, 'the drizzle error');
        logger.error({ err: new Error('charging failed', { cause: failure }) }, 'wrapped');
      }
      const text = lines.join('');
      for (const value of [id, pan, email, blob, pan.slice(0, 6)]) expect(text).not.toContain(value);
      const [driverRaise, , , driverAssert] = parsed().map((line) => line.err as Record<string, unknown>);
      expect(driverRaise!.message).toBe('refusing card [redacted] (pan [redacted], owner [redacted]): ciphertext [redacted]');
      expect(driverAssert!.message).toBe('card [redacted] failed the check');
      expect(driverRaise).toMatchObject({ code: 'P0001', routine: 'exec_stmt_raise' });
    } finally {
      await database.close();
    }
  });

  it("keeps a constraint violation's detail with its values censored, and censors any other detail whole", () => {
    const details: Array<[string, string]> = [
      ['Key (lower(email))=(jane@example.test) already exists.', 'Key (lower(email))=([redacted]) already exists.'],
      [
        'Key (user_id, card_id)=(u-s3cr3t, c-s3cr3t) is not present in table "users".',
        'Key (user_id, card_id)=([redacted]) is not present in table "users".',
      ],
      ['Key (id)=(s3cr3t) is still referenced from table "charges".', 'Key (id)=([redacted]) is still referenced from table "charges".'],
      ['Failing row contains (s3cr3t, null, 12).', 'Failing row contains ([redacted]).'],
      // A value imitating the rest of the sentence, or a newline, stays inside the brackets.
      ['Key (email)=(a) already exists.\nx@s3cr3t) already exists.', 'Key (email)=([redacted]) already exists.'],
      ['Key (span)=([1,2)) conflicts with existing key (span)=([0,s3cr3t)).', '[redacted]'],
      ['Token "s3cr3t" is invalid.', '[redacted]'],
      ['s3cr3t', '[redacted]'],
    ];
    const { logger, lines, parsed } = capturingLogger();
    for (const [detail] of details) {
      logger.error({ err: Object.assign(new Error('failed'), { code: '23505', detail, hint: 'h-s3cr3t', where: 'w-s3cr3t' }) }, 'failed');
    }
    expect(lines.join('')).not.toContain('s3cr3t');
    expect(parsed().map((line) => (line.err as { detail: unknown }).detail)).toEqual(details.map(([, logged]) => logged));
  });

  it('keeps a boolean or null under a sensitive key, and pagination tokens, but never a number', () => {
    const { logger, parsed } = capturingLogger();
    logger.info(
      {
        hasToken: true,
        hasPassword: false,
        refreshToken: null,
        nextPageToken: 'Y3Vyc29yOjQy',
        page_token: 'Y3Vyc29yOjQz',
        pan: 4111111111111111,
        cvc: 123,
        pageTokenSecret: 'page-s3cr3t',
      },
      'flags',
    );
    expect(parsed()[0]).toMatchObject({
      hasToken: true,
      hasPassword: false,
      refreshToken: null,
      nextPageToken: 'Y3Vyc29yOjQy',
      page_token: 'Y3Vyc29yOjQz',
      pan: '[redacted]',
      cvc: '[redacted]',
      pageTokenSecret: '[redacted]',
    });
  });

  it('shows a number under a key naming a quantity of credentials (a limit per API key), nothing else under it, and never a number under a credential', () => {
    const { logger, parsed } = capturingLogger();
    logger.info(
      {
        config: { ROUTER_SUBSCRIPTION_MAX_PER_API_KEY: 100, ROUTER_SUBSCRIPTION_MAX_WEBSOCKETS_PER_API_KEY: 20, ROUTER_MAX_TOKENS: 5000 },
        maxTokens: 12,
        limitPerToken: 3,
        'requests-per-api-key': 7,
        countsPerApiKey: { gp_live_s3cr3t: 1 },
        max_tokens: 's3cr3t-text',
        perApiKey: ['s3cr3t-list'],
        cardNumberMax: 4111111111111111,
        maxPan: 4111111111111111,
      },
      'limits',
    );
    const line = parsed()[0];
    expect(line).toMatchObject({
      config: { ROUTER_SUBSCRIPTION_MAX_PER_API_KEY: 100, ROUTER_SUBSCRIPTION_MAX_WEBSOCKETS_PER_API_KEY: 20, ROUTER_MAX_TOKENS: 5000 },
      maxTokens: 12,
      limitPerToken: 3,
      'requests-per-api-key': 7,
      countsPerApiKey: '[redacted]',
      max_tokens: '[redacted]',
      perApiKey: '[redacted]',
      // A PAN's digits are censored wherever they are.
      maxPan: '[redacted]',
    });
    expect(JSON.stringify(line)).not.toContain('s3cr3t');
    expect(JSON.stringify(line)).not.toContain('4111111111111111');
    // Every credential name keeps its number censored: a PIN, a CVC, a numeric password or token.
    for (const key of sensitiveKeys) {
      logger.info({ [key]: 123456 }, 'number');
      expect(parsed().at(-1)?.[key], key).toBe('[redacted]');
    }
  });

  it('redacts what a toJSON returns: a class instance holding a PAN', () => {
    class CardView {
      readonly pan: string;
      readonly last4: string;
      constructor(pan: string, last4: string) {
        this.pan = pan;
        this.last4 = last4;
      }
      toJSON() {
        return { pan: this.pan, last4: this.last4, kind: 'card' };
      }
    }
    const { logger, lines, parsed } = capturingLogger();
    logger.info({ card: new CardView('4111111111111111', '1111'), cards: [new CardView('5555555555554444', '4444')] }, 'card');
    expect(lines.join('')).not.toContain('4111111111111111');
    expect(lines.join('')).not.toContain('5555555555554444');
    expect(parsed()[0]).toMatchObject({
      card: { pan: '[redacted]', last4: '1111', kind: 'card' },
      cards: [{ pan: '[redacted]', last4: '4444', kind: 'card' }],
    });
  });

  it('never logs the credentials of a URL, as a URL or as a string', () => {
    const { logger, lines, parsed } = capturingLogger();
    logger.info(
      {
        callback: new URL('https://merchant:hunter2@hooks.example.test/charges?x=1'),
        databaseUrl: 'postgres://app:pg-s3cr3t@db.internal:5432/ghostpay',
        redis: ['redis://:redis-s3cr3t@cache:6379/0'],
        plain: new URL('https://example.test/a'),
        email: 'jane@example.test',
      },
      'urls',
    );
    const line = lines.join('');
    for (const secret of ['hunter2', 'pg-s3cr3t', 'redis-s3cr3t']) expect(line).not.toContain(secret);
    expect(parsed()[0]).toMatchObject({
      callback: 'https://[redacted]@hooks.example.test/charges?x=1',
      databaseUrl: 'postgres://[redacted]@db.internal:5432/ghostpay',
      redis: ['redis://[redacted]@cache:6379/0'],
      plain: 'https://example.test/a',
      email: 'jane@example.test',
    });
  });

  it('censors URL credentials as config does: malformed user information and credential query parameters, in fields, arguments, URLs and error text', () => {
    const { logger, lines, parsed } = capturingLogger();
    const urls = {
      slash: 'postgres://app:se/cr#et@db.internal/ledger?sslpassword=keypass',
      query: 'http://charges:4003/graphql?token=tk1&x=1',
      mongo: 'mongodb://mongo:27017/?authMechanismProperties=AWS_SESSION_TOKEN:awstok',
      spaced: 'redis://:pass word@cache:6379',
    };
    logger.info({ ...urls }, 'connecting to %s', urls.slash);
    logger.info({ callback: new URL('https://hooks.example.test/x?api_key=urlkey1') }, 'callback');
    logger.error({ err: new Error(`cannot reach ${urls.query}`) }, 'failed');
    const text = lines.join('');
    for (const secret of ['se/cr', 'cr#et', 'keypass', 'tk1', 'awstok', 'pass word', 'urlkey1']) expect(text).not.toContain(secret);
    const [first, second, third] = parsed();
    expect(first).toMatchObject({
      slash: 'postgres://[redacted]@db.internal/ledger?sslpassword=[redacted]',
      query: 'http://charges:4003/graphql?token=[redacted]&x=1',
      mongo: 'mongodb://mongo:27017/?authMechanismProperties=[redacted]',
      spaced: 'redis://[redacted]@cache:6379',
      msg: 'connecting to postgres://[redacted]@db.internal/ledger?sslpassword=[redacted]',
    });
    expect(second).toMatchObject({ callback: 'https://hooks.example.test/x?api_key=[redacted]' });
    expect((third!.err as { message: string }).message).toBe('cannot reach http://charges:4003/graphql?token=[redacted]&x=1');
  });

  it('keeps the paths of file URLs in a stack whole: an `@` in one is a scoped package, not user information', () => {
    const { logger, parsed } = capturingLogger();
    const error = new Error('boom');
    error.stack = 'Error: boom\n    at run (file:///app/node_modules/@apollo/server/dist/esm/run.js:10:5)';
    logger.error({ err: error }, 'failed');
    expect((parsed()[0]!.err as { stack: string }).stack).toContain('file:///app/node_modules/@apollo/server/dist/esm/run.js:10:5');
  });

  it('censors a PAN written inside any logged text: fields at any depth, bindings, the message, its arguments, error text', () => {
    const { logger, lines, parsed } = capturingLogger();
    const pans = ['4111111111111111', '4111 1111 1111 1111', '5555-5555-5555-4444', '3782.822463.10005', '6011_0009_9013_9424'];
    logger.child({ note: `bound ${pans[0]}` }).info(
      {
        description: `refund for card ${pans[1]} (customer call)`,
        nested: { items: [{ memo: pans[2] }, `amex ${pans[3]}`] },
        operationName: `Pay_${pans[4]}`,
        requestId: '6f1c2e0a-4b7d-4c1e-9a2b-0c3d4e5f6a7b',
        chargeId: '12345678-1234-4123-8123-123456789012',
        trace_id: '55555555555544440000000000000000',
        span_id: '5555555555554444',
        notAPan: '4111111111111113',
        amount: '100000000',
        at: '2026-01-31T12:00:00.000Z',
      },
      `declined ${pans[0]}`,
    );
    logger.warn('retry for %s', `card ${pans[2]}`);
    logger.error(new Error(`issuer refused ${pans[1]}`));
    logger.error({ err: Object.assign(new Error('wrapped'), { cause: new Error(`cause ${pans[3]}`), card: pans[4] }) }, 'failed');
    const text = lines.join('');
    for (const pan of pans) expect(text).not.toContain(pan);
    const [first, second, third, fourth] = parsed();
    expect(first).toMatchObject({
      note: 'bound [redacted]',
      msg: 'declined [redacted]',
      description: 'refund for card [redacted] (customer call)',
      nested: { items: [{ memo: '[redacted]' }, 'amex [redacted]'] },
      operationName: 'Pay_[redacted]',
      // Ids are kept whatever digits they hold (trace and span ids under their keys, UUIDs anywhere), and a
      // digit run with no Luhn-valid 13-19 digit window, an amount, a time are no PAN.
      requestId: '6f1c2e0a-4b7d-4c1e-9a2b-0c3d4e5f6a7b',
      chargeId: '12345678-1234-4123-8123-123456789012',
      trace_id: '55555555555544440000000000000000',
      span_id: '5555555555554444',
      notAPan: '4111111111111113',
      amount: '100000000',
      at: '2026-01-31T12:00:00.000Z',
    });
    expect(second!.msg).toBe('retry for card [redacted]');
    expect(third!.msg).toBe('issuer refused [redacted]');
    expect((third!.err as { message: string }).message).toBe('issuer refused [redacted]');
    expect((fourth!.err as { stack: string }).stack).toContain('cause [redacted]');
    expect((fourth!.err as { card: string }).card).toBe('[redacted]');
  });

  it('censors a PAN logged as a number or bigint: fields, arrays, error properties, interpolated values, the message', () => {
    const { logger, lines, parsed } = capturingLogger();
    const pan = 4111111111111111;
    logger.info(
      {
        card: { number: pan },
        values: [5555555555554444, 1050],
        big: 378282246310005n,
        // A number is a PAN only whole, of 14-19 digits: a 16-digit microsecond time holding a
        // Luhn-valid 13-digit window, an amount, a millisecond time (13 digits, Luhn-valid here),
        // a 16-digit number failing Luhn are kept.
        micros: 1795419688123456,
        amount: 1050,
        atMs: 1795419688126,
        notAPan: 4111111111111113,
      },
      'numbers',
    );
    logger.error({ err: Object.assign(new Error('declined'), { card: pan }) }, 'failed');
    logger.info('card %s', pan);
    logger.info({ requestId: 'req-1' }, 'card %o', 6011000990139424);
    logger.info(pan);
    expect(lines.join('')).not.toMatch(/4111111111111111|5555555555554444|378282246310005|6011000990139424/);
    const [fields, failed, interpolated, object, bare] = parsed();
    expect(fields).toMatchObject({
      card: { number: '[redacted]' },
      values: ['[redacted]', 1050],
      big: '[redacted]',
      micros: 1795419688123456,
      amount: 1050,
      atMs: 1795419688126,
      notAPan: 4111111111111113,
    });
    expect((failed!.err as { card: unknown }).card).toBe('[redacted]');
    expect(interpolated!.msg).toBe('card [redacted]');
    expect(object!.msg).toBe("card '[redacted]'");
    expect(bare!.msg).toBe('[redacted]');
  });

  it('prints a PAN interpolated with %d, %i or %f as [redacted], not NaN, and keeps every other placeholder in place', () => {
    const { logger, lines, parsed } = capturingLogger();
    const pan = 4111111111111111;
    logger.info('card %d declined', pan);
    // pino's types check a template's placeholders and know neither %i, %f nor %x.
    const info = logger.info.bind(logger) as (...args: unknown[]) => void;
    info({ requestId: 'req-1' }, 'card %i of %d at 5%% then %f and %s', 5555555555554444n, 3, pan, 'text');
    info('%x %d %d', 'odd', pan, 1050);
    info('amount %d, %i', 1050, 2.5);
    expect(lines.join('')).not.toMatch(/4111111111111111|5555555555554444|NaN/);
    expect(parsed().map((line) => line.msg)).toEqual([
      'card [redacted] declined',
      'card [redacted] of 3 at 5% then [redacted] and text',
      // quick-format (pino's) gives an unknown placeholder an argument too, and prints it as written.
      '%x [redacted] 1050',
      'amount 1050, 2',
    ]);
  });

  it('censors the values a message template interpolates, and URL credentials in the template', () => {
    const { logger, lines, parsed } = capturingLogger();
    const user = { email: 'jane@example.test', password: 'fmt-pw-s3cr3t', card: { pan: '4111111111111111' } };
    logger.info('user %j', user);
    logger.warn({ requestId: 'req-1' }, 'retrying %s after %o', 'postgres://app:fmt-pg-s3cr3t@db/x', { apiKey: 'gp_fmt_key' });
    logger.error('query failed: %j', Object.assign(new Error('boom'), { params: ['fmt-bound-s3cr3t'] }));
    logger.info('connecting to redis://:fmt-redis-s3cr3t@cache:6379');
    logger.info('%d charges, %s', 3, 'plain text');
    const text = lines.join('');
    for (const secret of ['fmt-pw-s3cr3t', '4111111111111111', 'fmt-pg-s3cr3t', 'gp_fmt_key', 'fmt-bound-s3cr3t', 'fmt-redis-s3cr3t']) {
      expect(text).not.toContain(secret);
    }
    const [first, second, third, fourth, fifth] = parsed();
    expect(JSON.parse((first!.msg as string).slice('user '.length))).toEqual({
      email: 'jane@example.test',
      password: '[redacted]',
      card: { pan: '[redacted]' },
    });
    expect(second).toMatchObject({ requestId: 'req-1' });
    expect(second!.msg).toContain('retrying postgres://[redacted]@db/x after');
    expect(second!.msg).toContain('{"apiKey":"[redacted]"}');
    expect(third!.msg).toContain('boom');
    expect(fourth!.msg).toBe('connecting to redis://[redacted]@cache:6379');
    // Nothing to censor: the call is formatted as pino would.
    expect(fifth!.msg).toBe('3 charges, plain text');
    // The caller's objects are not changed.
    expect(user.password).toBe('fmt-pw-s3cr3t');
  });

  it('summarises a Buffer and keeps a Date', () => {
    const { logger, parsed } = capturingLogger();
    logger.info({ body: Buffer.from('key-material'), bytes: new Uint8Array(3), when: new Date(0) }, 'bytes');
    expect(parsed()[0]).toMatchObject({
      body: { type: 'Buffer', byteLength: 12 },
      bytes: { type: 'Uint8Array', byteLength: 3 },
      when: '1970-01-01T00:00:00.000Z',
    });
  });

  /** Logs through `log`: it must not throw, must write one line, and no needle may appear in it. */
  function logsSafely(log: (logger: Logger) => void, needles: string[]): Record<string, unknown> {
    const { logger, lines } = capturingLogger();
    expect(() => log(logger)).not.toThrow();
    expect(lines).toHaveLength(1);
    for (const needle of needles) expect(lines[0]).not.toContain(needle);
    return JSON.parse(lines[0]!);
  }

  it('logs an error that reaches itself through a plain object', () => {
    const error = new Error('charge failed') as Error & { ctx?: unknown };
    error.ctx = { e: error, token: 'tok-circular-s3cr3t', list: [error] };
    const line = logsSafely((logger) => logger.error({ err: error }, 'failed'), ['tok-circular-s3cr3t']);
    expect(line.err).toMatchObject({
      type: 'Error',
      message: 'charge failed',
      ctx: { e: '[Circular]', token: '[redacted]', list: ['[Circular]'] },
    });
    // The same error under another key, inside a plain object: the formatter's walk.
    const nested = logsSafely((logger) => logger.warn({ outer: { error } }, 'nested'), ['tok-circular-s3cr3t']);
    expect(nested.outer).toMatchObject({ error: { message: 'charge failed', ctx: { e: '[Circular]' } } });
  });

  it('logs a 20k-deep object, array and cause chain, cut at depth 10', () => {
    const depth = 20_000;
    let deep: Record<string, unknown> = { token: 'tok-deep-s3cr3t' };
    let deepArray: unknown[] = ['bottom'];
    let chain = new Error('root');
    for (let i = 0; i < depth; i++) {
      deep = { next: deep };
      deepArray = [deepArray];
      chain = new Error(`level ${i}`, { cause: chain });
    }
    const line = logsSafely((logger) => logger.info({ deep, deepArray }, 'deep'), ['tok-deep-s3cr3t']);
    expect(JSON.stringify(line.deep)).toContain('"[Object]"');
    expect(JSON.stringify(line.deepArray)).toContain('"[Array]"');
    expect(JSON.stringify(line).length).toBeLessThan(2_000);
    const errLine = logsSafely((logger) => logger.error({ err: chain }, 'deep cause'), []);
    expect((errLine.err as { message: string }).message).toMatch(/^level 19999: level 19998: .*\[Error\]$/);
  });

  it('writes a minimal line, without the object, when a getter throws', () => {
    const fields = {
      token: 'tok-getter-s3cr3t',
      cardNumber: '4111111111111111',
      get broken(): string {
        throw new Error('cannot read 4111111111111111');
      },
    };
    const line = logsSafely((logger) => logger.info(fields, 'getter'), ['tok-getter-s3cr3t', '4111111111111111']);
    expect(line).toMatchObject({ level: 30, msg: 'getter', service: 'test', logError: 'unserializable' });
    expect(line).not.toHaveProperty('token');

    // In an error's own properties: the err field says so, the rest of the line stays.
    const error = new Error('boom');
    Object.defineProperty(error, 'detail', {
      enumerable: true,
      get() {
        throw new Error('cannot read tok-getter-s3cr3t');
      },
    });
    const errLine = logsSafely((logger) => logger.error({ err: error, requestId: 'req-1' }, 'failed'), ['tok-getter-s3cr3t']);
    expect(errLine).toMatchObject({ msg: 'failed', requestId: 'req-1', err: { logError: 'unserializable' } });
  });

  it('writes a minimal line when the formatter itself fails (a revoked proxy)', () => {
    const { proxy, revoke } = Proxy.revocable({ password: 'proxy-s3cr3t' }, {});
    revoke();
    const line = logsSafely(
      (logger) => logger.warn({ apiKey: 'gp_live_proxy', holder: proxy }, 'proxied'),
      ['gp_live_proxy', 'proxy-s3cr3t'],
    );
    expect(line).toMatchObject({ level: 40, msg: 'proxied', logError: 'unserializable' });
    // A child logger's bindings: the child is still made and logs.
    const { logger, lines } = capturingLogger();
    expect(() => logger.child({ holder: proxy }).info('from the child')).not.toThrow();
    expect(JSON.parse(lines[0]!)).toMatchObject({ msg: 'from the child', logError: 'unserializable' });
  });
});

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
