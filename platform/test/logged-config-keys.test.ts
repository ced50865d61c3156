/**
 * The start-up `effective configuration` line shows what `redactConfig` shows, for every
 * variable of every service's schema: the logger's own censoring of credential-named keys must
 * not hide a limit (`ROUTER_SUBSCRIPTION_MAX_PER_API_KEY: [redacted]` was logged), and a
 * number under a credential's own name stays censored.
 *
 * The services' schemas are imported by package name at run time (platform does not depend on
 * the services; they depend on it), the way deploy-checks' effective-config test runs their
 * entry points.
 */
import { capturingLogger } from '@ghostpay/test-support';
import { describe, expect, it } from 'vitest';
import {
  baseConfigSchema,
  isSecretConfigField,
  isSensitiveKey,
  logEffectiveConfig,
  redactConfig,
  serverTlsConfigSchema,
  z,
} from '../src/index.ts';

const servicePackages = [
  '@ghostpay/router',
  '@ghostpay/auth',
  '@ghostpay/cards',
  '@ghostpay/charges',
  '@ghostpay/analytics',
  '@ghostpay/openapi-bridge',
];

/** Every `…ConfigSchema` object schema the services export, with platform's own. */
async function everyConfigSchema(): Promise<Array<[string, z.ZodObject]>> {
  const schemas: Array<[string, z.ZodObject]> = [
    ['platform baseConfigSchema', baseConfigSchema],
    ['platform serverTlsConfigSchema', serverTlsConfigSchema as unknown as z.ZodObject],
  ];
  for (const name of servicePackages) {
    const exported = (await import(name)) as Record<string, unknown>;
    const found = Object.entries(exported).filter(([key, value]) => key.endsWith('ConfigSchema') && value instanceof z.ZodObject);
    expect(found.length, `${name} exports a …ConfigSchema`).toBeGreaterThan(0);
    for (const [key, value] of found) schemas.push([`${name} ${key}`, value as z.ZodObject]);
  }
  return schemas;
}

/** A value the variable's own schema accepts, as parsed: a number, a flag, a word, a URL or a path. */
function sampleValue(field: z.ZodType): unknown {
  for (const text of [
    '5',
    '3600',
    'true',
    'info',
    'production',
    'http://127.0.0.1:9/x',
    'name=http://127.0.0.1:9/x',
    '/etc/ghostpay/x.pem',
  ]) {
    const result = field.safeParse(text);
    if (result.success && result.data !== undefined) return result.data;
  }
  return undefined;
}

describe('the effective configuration line', () => {
  it('shows every variable of every schema as redactConfig shows it: limits named after keys and tokens are numbers, secrets are [redacted]', async () => {
    const schemas = await everyConfigSchema();
    const shownNumbers: string[] = [];
    for (const [schemaName, schema] of schemas) {
      for (const [name, field] of Object.entries(schema.shape as Record<string, z.ZodType>)) {
        const value = sampleValue(field);
        if (value === undefined) continue;
        const { logger, parsed } = capturingLogger();
        logEffectiveConfig(logger, schema, { [name]: value });
        const logged = parsed<{ config: Record<string, unknown> }>()[0]?.config?.[name];
        const shown = JSON.parse(JSON.stringify(redactConfig(schema, { [name]: value })))[name];
        expect(logged, `${schemaName} ${name}`).toEqual(shown);
        if (isSecretConfigField(schema, name)) expect(logged, `${schemaName} ${name}`).toBe('[redacted]');
        if (typeof value === 'number' && isSensitiveKey(name)) shownNumbers.push(name);
      }
    }
    // The variables this was about are among those checked, and shown.
    expect(shownNumbers).toEqual(
      expect.arrayContaining([
        'ROUTER_MAX_TOKENS',
        'ROUTER_SUBSCRIPTION_MAX_PER_API_KEY',
        'ROUTER_SUBSCRIPTION_MAX_WEBSOCKETS_PER_API_KEY',
      ]),
    );
  });

  it('shows every file and directory path (a _FILE or _DIR variable): an operator needs to see which one a problem is about', async () => {
    const paths: string[] = [];
    for (const [schemaName, schema] of await everyConfigSchema()) {
      for (const name of Object.keys(schema.shape)) {
        if (!/_(?:FILE|DIR)$/.test(name)) continue;
        paths.push(name);
        expect(isSecretConfigField(schema, name), `${schemaName} ${name}`).toBe(false);
      }
    }
    expect(paths).toEqual(
      expect.arrayContaining(['SECRETS_DIR', 'TLS_KEY_FILE', 'ROUTER_SUBGRAPH_TLS_KEY_FILE', 'BRIDGE_TLS_KEY_FILE', 'JWKS_TLS_KEY_FILE']),
    );
  });
});
