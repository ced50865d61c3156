import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { capturingLogger } from '@ghostpay/test-support';
import { describe, expect, it } from 'vitest';
import {
  baseConfigSchema,
  env,
  jwtVerifierEnv,
  jwtVerifierOptionsFrom,
  logEffectiveConfig,
  parseConfig,
  redactConfig,
  serverTlsConfigSchema,
  z,
} from '../src/index.ts';

const run = promisify(execFile);
const escaped = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const fixture = fileURLToPath(new URL('./fixtures/config-check.ts', import.meta.url));

describe('config from env', () => {
  it('types and defaults a valid environment', () => {
    const schema = baseConfigSchema.extend({ PORT: env.port(4001), VERBOSE: env.boolean(false) });
    const result = parseConfig(schema, { PORT: '4100', VERBOSE: 'yes' });
    expect(result).toEqual({
      ok: true,
      config: {
        NODE_ENV: 'development',
        LOG_LEVEL: 'info',
        HOST: '127.0.0.1',
        SHUTDOWN_TIMEOUT_MS: 10_000,
        MAX_CONNECTIONS: 10_000,
        PORT: 4100,
        VERBOSE: true,
      },
    });
  });

  it('reads an optional count as digits only: unset stays unset, 0 is 0, anything else is refused', () => {
    const schema = z.object({ COUNT: env.optionalCount() });
    expect(parseConfig(schema, {})).toEqual({ ok: true, config: {} });
    expect(parseConfig(schema, { COUNT: '0' })).toEqual({ ok: true, config: { COUNT: 0 } });
    expect(parseConfig(schema, { COUNT: '250' })).toEqual({ ok: true, config: { COUNT: 250 } });
    for (const bad of ['', '-1', '1.5', 'ten', ' 3']) {
      const result = parseConfig(schema, { COUNT: bad });
      expect(result.ok, bad).toBe(false);
      if (!result.ok) expect(result.problems[0]).toMatch(/^COUNT: must be a whole number ≥ 0/);
    }
  });

  it('refuses a blank port, count or timeout, and numbers not written in plain decimal digits, naming the variable and its value', () => {
    const schema = baseConfigSchema.extend({ CARDS_PORT: env.port(4002), BATCH: env.positiveInt(100), LIMIT: env.optionalCount() });
    for (const bad of ['', ' ', '1e3', '0x10', '0b1', '1.0', '+5', '-0', ' 80', '80 ', 'Infinity', '9'.repeat(20)]) {
      for (const name of ['CARDS_PORT', 'BATCH', 'LIMIT', 'SHUTDOWN_TIMEOUT_MS', 'MAX_CONNECTIONS']) {
        const result = parseConfig(schema, { [name]: bad });
        expect(result, `${name}=${JSON.stringify(bad)}`).toEqual({
          ok: false,
          problems: [expect.stringMatching(new RegExp(`^${name}: must be a whole number .*\\(got ${escaped(JSON.stringify(bad))}\\)$`))],
        });
      }
    }
    expect(parseConfig(schema, { CARDS_PORT: '0', BATCH: '1', LIMIT: '0', SHUTDOWN_TIMEOUT_MS: '0250' })).toMatchObject({
      ok: true,
      config: { CARDS_PORT: 0, BATCH: 1, LIMIT: 0, SHUTDOWN_TIMEOUT_MS: 250 },
    });
    expect(parseConfig(schema, { CARDS_PORT: '65536', BATCH: '0' })).toEqual({
      ok: false,
      problems: [
        'CARDS_PORT: must be a whole number from 0 to 65535, in digits (got "65536")',
        'BATCH: must be a whole number ≥ 1, in digits (got "0")',
      ],
    });
  });

  it('reports every problem, one line each, without echoing secrets', () => {
    const schema = z.object({ PORT: env.port(1), DATABASE_URL: env.optionalUrl(), API_SECRET: z.string().min(8) });
    const result = parseConfig(schema, { PORT: 'eighty', DATABASE_URL: 'postgres://app:pw@db:x/ledger', API_SECRET: 'short' });
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.problems).toHaveLength(3);
    expect(result.problems[0]).toMatch(/^PORT: .*got "eighty"/);
    expect(result.problems[1]).toMatch(/^DATABASE_URL: .*got "postgres:\/\/\[redacted\]@db:x\/ledger"/);
    expect(result.problems.join('\n')).not.toContain('short');
    expect(result.problems.join('\n')).not.toContain('pw');
  });

  it('shows the value of a variable whose name says KEY but whose value is a number, a boolean or one of a set', () => {
    const schema = z.object({
      SIGNING_KEY_ROTATION_INTERVAL_SECONDS: z.coerce.number().int().min(3600).default(0),
      FAILED_EXCHANGE_LIMIT_PER_KEY: env.positiveInt(5),
      TOKEN_CACHE_ENABLED: env.boolean(true),
      KEY_ALGORITHM: z.enum(['RS256', 'ES256']).default('RS256'),
    });
    const result = parseConfig(schema, {
      SIGNING_KEY_ROTATION_INTERVAL_SECONDS: '30',
      FAILED_EXCHANGE_LIMIT_PER_KEY: '-1',
      TOKEN_CACHE_ENABLED: 'maybe',
      KEY_ALGORITHM: 'HS256',
    });
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.problems).toEqual([
      expect.stringMatching(/^SIGNING_KEY_ROTATION_INTERVAL_SECONDS: .*\(got "30"\)$/),
      expect.stringMatching(/^FAILED_EXCHANGE_LIMIT_PER_KEY: .*\(got "-1"\)$/),
      expect.stringMatching(/^TOKEN_CACHE_ENABLED: .*\(got "maybe"\)$/),
      expect.stringMatching(/^KEY_ALGORITHM: .*\(got "HS256"\)$/),
    ]);
  });

  it('never shows a variable the schema declares secret, whatever its name, nor a message quoting it', () => {
    const schema = z
      .object({
        LEDGER_PEPPERED_HASH: env.secret(z.string().min(64)),
        WEBHOOK_SIGNING: env.secret().optional(),
        ROUTE_MAP: env.secret(z.string().refine((v) => v.startsWith('x'), { error: (i) => `bad map ${String(i.input)}` })),
      })
      .superRefine((config, ctx) => {
        if (config.WEBHOOK_SIGNING === 'abc') ctx.addIssue({ code: 'custom', path: ['WEBHOOK_SIGNING'], message: 'must not be abc' });
      });
    const result = parseConfig(schema, {
      LEDGER_PEPPERED_HASH: 'hunter2-hunter2',
      WEBHOOK_SIGNING: '',
      ROUTE_MAP: 'wh_sec_0123456789',
    });
    expect(result.ok).toBe(false);
    if (result.ok) return;
    const text = result.problems.join('\n');
    expect(result.problems).toHaveLength(3);
    for (const line of result.problems) expect(line).toMatch(/\(got "\[redacted\]"\)$/);
    expect(text).not.toContain('hunter2');
    expect(text).not.toContain('0123456789');
  });

  it('still hides a string variable named like a credential when the schema says nothing, and shows one declared not secret', () => {
    const schema = z.object({
      PAYMENT_GATEWAY_TOKEN: z.string().min(40),
      DB_PASSWORD: z.string().min(12),
      TLS_KEY_FILE: env.filePath(),
      KEY_ID: env.shown(z.string().regex(/^kid_/)),
    });
    const result = parseConfig(schema, { PAYMENT_GATEWAY_TOKEN: 'tok_live_abc', DB_PASSWORD: 'pw', TLS_KEY_FILE: '', KEY_ID: 'k1' });
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.problems).toEqual([
      expect.stringMatching(/^PAYMENT_GATEWAY_TOKEN: .*\(got "\[redacted\]"\)$/),
      expect.stringMatching(/^DB_PASSWORD: .*\(got "\[redacted\]"\)$/),
      expect.stringMatching(/^TLS_KEY_FILE: .*\(got ""\)$/),
      expect.stringMatching(/^KEY_ID: .*\(got "k1"\)$/),
    ]);
  });

  it("shows the server TLS files' paths, TLS_KEY_FILE's too: a path, not the key", () => {
    const files = { TLS_CERT_FILE: '/etc/tls/tls.crt', TLS_KEY_FILE: '/etc/tls/tls.key', TLS_CLIENT_CA_FILE: '/etc/tls/ca.crt' };
    expect(redactConfig(serverTlsConfigSchema, files)).toEqual(files);
    const result = parseConfig(serverTlsConfigSchema, { ...files, TLS_KEY_FILE: '' });
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.problems).toEqual([expect.stringMatching(/^TLS_KEY_FILE: .*\(got ""\)$/)]);
  });

  it('shows a URL with its credentials censored, a malformed one too, in the value and in a message quoting it', () => {
    const pairs = z.string().transform((value, ctx) => {
      for (const entry of value.split(',')) {
        if (!URL.canParse(entry.split('=').slice(1).join('=')))
          ctx.addIssue({ code: 'custom', message: `expected name=url pairs, got "${entry}"` });
      }
      return value;
    });
    const schema = z.object({ DATABASE_URL: env.url(), MONGODB_URL: z.string().startsWith('mongodb://'), SUBGRAPH_URLS: pairs });
    const result = parseConfig(schema, {
      // A password holding `/` makes the URL unparseable: what config refuses is what must still be censored.
      DATABASE_URL: 'postgres://app:se/cr#et@db.internal/ledger?sslpassword=keypass',
      MONGODB_URL: 'mongo://reader:s3cret@mongo:27017/?authSource=admin',
      SUBGRAPH_URLS: 'cards=http://svc:pa/ss@cards:4002/graphql,charges=http://charges:4003/graphql?token=tk1',
    });
    expect(result.ok).toBe(false);
    if (result.ok) return;
    const text = result.problems.join('\n');
    for (const secret of ['se/cr', 'cr#et', 'keypass', 's3cret', 'pa/ss', 'tk1']) expect(text).not.toContain(secret);
    expect(result.problems[0]).toMatch(/^DATABASE_URL: .*got "postgres:\/\/\[redacted\]@db\.internal\/ledger\?sslpassword=\[redacted\]"/);
    expect(result.problems[1]).toMatch(/^MONGODB_URL: .*got "mongo:\/\/\[redacted\]@mongo:27017\/\?authSource=admin"/);
    expect(result.problems[2]).toMatch(/^SUBGRAPH_URLS: expected name=url pairs, got "cards=http:\/\/\[redacted\]@cards:4002\/graphql" /);
    expect(text).toContain('charges=http://charges:4003/graphql?token=[redacted]');
  });

  it('redacts a config dump the same way', () => {
    const schema = z.object({
      DATABASE_URL: env.url(),
      API_TOKEN: z.string(),
      HMAC: env.secret(),
      ROTATION_KEY_DAYS: env.positiveInt(1),
      URLS: z.string().transform((v) => ({ a: v })),
    });
    const parsed = parseConfig(schema, {
      DATABASE_URL: 'postgres://u:pw@h/d',
      API_TOKEN: 't0k',
      HMAC: 'h4c',
      ROTATION_KEY_DAYS: '3',
      URLS: 'http://u:pw@x/',
    });
    if (!parsed.ok) throw new Error(parsed.problems.join('\n'));
    expect(redactConfig(schema, parsed.config)).toEqual({
      DATABASE_URL: 'postgres://[redacted]@h/d',
      API_TOKEN: '[redacted]',
      HMAC: '[redacted]',
      ROTATION_KEY_DAYS: 3,
      URLS: { a: 'http://[redacted]@x/' },
    });
  });

  it('logs the effective configuration at start-up in one info line, secrets and URL credentials censored', () => {
    const { logger, lines, parsed } = capturingLogger('demo');
    const schema = baseConfigSchema.extend({
      DEMO_PORT: env.port(4100),
      DATABASE_URL: env.optionalUrl(),
      REDIS_URL: z.string().optional(),
      INGEST_TOKEN: z.string().optional(),
      HMAC: env.secret().optional(),
      JWKS_TLS_KEY_FILE: env.filePath().optional(),
      RETRY_LIMIT_PER_KEY: env.positiveInt(3),
    });
    const parsedConfig = parseConfig(schema, {
      DATABASE_URL: 'postgres://app:db-s3cr3t@db.internal/ledger?sslpassword=ssl-s3cr3t',
      REDIS_URL: 'redis://:re/dis-s3cr3t@cache:6379',
      INGEST_TOKEN: 'ingest-s3cr3t',
      HMAC: 'hmac-s3cr3t',
      JWKS_TLS_KEY_FILE: '/etc/tls/client.key',
      MAX_CONNECTIONS: '500',
    });
    if (!parsedConfig.ok) throw new Error(parsedConfig.problems.join('\n'));
    logEffectiveConfig(logger, schema, parsedConfig.config);
    expect(lines.join('')).not.toMatch(/s3cr3t/);
    expect(parsed()).toEqual([
      expect.objectContaining({
        level: 30,
        msg: 'effective configuration',
        config: {
          NODE_ENV: 'development',
          LOG_LEVEL: 'info',
          HOST: '127.0.0.1',
          SHUTDOWN_TIMEOUT_MS: 10_000,
          MAX_CONNECTIONS: 500,
          DEMO_PORT: 4100,
          DATABASE_URL: 'postgres://[redacted]@db.internal/ledger?sslpassword=[redacted]',
          REDIS_URL: 'redis://[redacted]@cache:6379',
          INGEST_TOKEN: '[redacted]',
          HMAC: '[redacted]',
          JWKS_TLS_KEY_FILE: '/etc/tls/client.key',
          RETRY_LIMIT_PER_KEY: 3,
        },
      }),
    ]);
  });

  it('stops the process with one readable line per problem and no stack trace', async () => {
    const error = await run(process.execPath, [fixture], {
      env: { PATH: process.env.PATH, PORT: '99999', CARD_MAX_AMOUNT: '-5' },
    }).catch((e: { code: number; stderr: string }) => e);
    expect(error).toMatchObject({ code: 1 });
    const lines = (error as { stderr: string }).stderr.trim().split('\n');
    expect(lines[0]).toBe('fixture: invalid configuration');
    expect(lines.slice(1).map((l) => l.trim().split(':')[0])).toEqual(['PORT', 'CARD_MAX_AMOUNT', 'PEPPER']);
    expect((error as { stderr: string }).stderr).not.toMatch(/\bat .*\.ts:\d+/);
  });

  it('starts when the environment is valid', async () => {
    const { stdout } = await run(process.execPath, [fixture], {
      env: { PATH: process.env.PATH, PEPPER: 'a-long-enough-pepper' },
    });
    expect(JSON.parse(stdout)).toMatchObject({ PORT: 4001, CARD_MAX_AMOUNT: 1_000_000 });
  });
});

describe('the JWT verifier env', () => {
  const schema = baseConfigSchema.extend(jwtVerifierEnv);

  it('gives createJwtVerifier options, the stale-key grace in milliseconds (1 h unless set; 0 turns it off)', () => {
    const defaults = parseConfig(schema, {});
    if (!defaults.ok) throw new Error(defaults.problems.join('\n'));
    expect(jwtVerifierOptionsFrom(defaults.config)).toEqual({
      jwksUrl: 'http://127.0.0.1:4001/.well-known/jwks.json',
      issuer: 'ghostpay-auth',
      audience: 'ghostpay-api',
      jwksStaleGraceMs: 3_600_000,
    });
    const off = parseConfig(schema, { JWKS_STALE_GRACE_SECONDS: '0', JWKS_URL: 'https://auth.internal/.well-known/jwks.json' });
    if (!off.ok) throw new Error(off.problems.join('\n'));
    expect(jwtVerifierOptionsFrom(off.config)).toMatchObject({
      jwksUrl: 'https://auth.internal/.well-known/jwks.json',
      jwksStaleGraceMs: 0,
    });
  });

  it('refuses a grace that is not a whole number of seconds up to a day, and an empty issuer', () => {
    for (const bad of [
      { JWKS_STALE_GRACE_SECONDS: '-1' },
      { JWKS_STALE_GRACE_SECONDS: '1.5' },
      { JWKS_STALE_GRACE_SECONDS: '86401' },
      { JWT_ISSUER: '' },
    ]) {
      expect(parseConfig(schema, bad).ok, JSON.stringify(bad)).toBe(false);
    }
  });

  it('refuses a blank grace instead of reading it as 0 (the grace silently off)', () => {
    expect(parseConfig(schema, { JWKS_STALE_GRACE_SECONDS: '' })).toEqual({
      ok: false,
      problems: ['JWKS_STALE_GRACE_SECONDS: must be a whole number from 0 to 86400, in digits (got "")'],
    });
  });
});
