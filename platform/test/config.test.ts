import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { baseConfigSchema, env, jwtVerifierEnv, jwtVerifierOptionsFrom, parseConfig, z } from '../src/index.ts';

const run = promisify(execFile);
const fixture = fileURLToPath(new URL('./fixtures/config-check.ts', import.meta.url));

describe('config from env', () => {
  it('types and defaults a valid environment', () => {
    const schema = baseConfigSchema.extend({ PORT: env.port(4001), VERBOSE: env.boolean(false) });
    const result = parseConfig(schema, { PORT: '4100', VERBOSE: 'yes' });
    expect(result).toEqual({
      ok: true,
      config: { NODE_ENV: 'development', LOG_LEVEL: 'info', HOST: '127.0.0.1', SHUTDOWN_TIMEOUT_MS: 10_000, PORT: 4100, VERBOSE: true },
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

  it('reports every problem, one line each, without echoing secrets', () => {
    const schema = z.object({ PORT: env.port(1), DATABASE_URL: env.optionalUrl(), API_SECRET: z.string().min(8) });
    const result = parseConfig(schema, { PORT: 'eighty', DATABASE_URL: 'not a url', API_SECRET: 'short' });
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.problems).toHaveLength(3);
    expect(result.problems[0]).toMatch(/^PORT: .*got "eighty"/);
    expect(result.problems[1]).toMatch(/^DATABASE_URL: .*\[redacted\]/);
    expect(result.problems.join('\n')).not.toContain('short');
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
});
