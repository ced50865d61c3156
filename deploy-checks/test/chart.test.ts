import { existsSync, readdirSync } from 'node:fs';
import { jwtVerifierEnv, serverTlsConfigSchema } from '@ghostpay/platform';
import { Ajv } from 'ajv';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { Renderer } from '../src/go-template.ts';
import { readRepoFile, repoPath } from '../src/repo.ts';

const chart = 'charts/ghostpay';
// biome-ignore lint/suspicious/noExplicitAny: free-form YAML that the tests mutate by path; the schema is what types it.
type Values = Record<string, any>;
const values = parse(readRepoFile(`${chart}/values.yaml`)) as Values;
const schema = JSON.parse(readRepoFile(`${chart}/values.schema.json`));
// strict: unknown keywords in the schema are errors; strictTypes off because if/then branches name no type.
const ajv = new Ajv({ allErrors: true, strict: true, strictTypes: false });
const validate = ajv.compile(schema);

/**
 * The port contract between engineers (helper guide): service → package, port env, default port,
 * and the composition root that reads its env.
 */
const contract = {
  router: { pkg: '@ghostpay/router', portEnv: 'ROUTER_PORT', port: 4000, main: 'router/src/main.ts' },
  auth: { pkg: '@ghostpay/auth', portEnv: 'AUTH_PORT', port: 4001, main: 'subgraphs/auth/src/main.ts' },
  cards: { pkg: '@ghostpay/cards', portEnv: 'CARDS_PORT', port: 4002, main: 'subgraphs/cards/src/main.ts' },
  charges: { pkg: '@ghostpay/charges', portEnv: 'CHARGES_PORT', port: 4003, main: 'subgraphs/charges/src/main.ts' },
  analytics: { pkg: '@ghostpay/analytics', portEnv: 'ANALYTICS_PORT', port: 4004, main: 'subgraphs/analytics/src/main.ts' },
  bridge: { pkg: '@ghostpay/openapi-bridge', portEnv: 'BRIDGE_PORT', port: 8080, main: 'openapi-bridge/src/main.ts' },
} as const;
type ServiceName = keyof typeof contract;

/** The services to deploy: every subgraph in supergraph.yaml, plus the router and the bridge. */
function deployedServices(): string[] {
  const fixed = ['router', 'auth', 'cards', 'charges', 'analytics', 'bridge'];
  if (!existsSync(repoPath('supergraph.yaml'))) return fixed;
  const supergraph = parse(readRepoFile('supergraph.yaml')) as { subgraphs: Record<string, unknown> };
  return [...new Set([...Object.keys(supergraph.subgraphs), ...fixed])];
}

function withChange(change: (v: Values) => void): Values {
  const copy = structuredClone(values);
  change(copy);
  return copy;
}

describe('values.schema.json', () => {
  it('accepts the default values', () => {
    expect(validate(values), JSON.stringify(validate.errors, null, 2)).toBe(true);
  });

  it('accepts a green release with a 25% canary', () => {
    const canary = withChange((v) => {
      v.colors.green = { enabled: true, imageTag: '0.2.0' };
      v.canary = { enabled: true, weight: 25 };
    });
    expect(validate(canary), JSON.stringify(validate.errors)).toBe(true);
  });

  it('accepts a connection cap per service (maxConnections, MAX_CONNECTIONS)', () => {
    const capped = withChange((v) => {
      v.defaults.maxConnections = 2000;
      v.services.router.maxConnections = 50_000;
    });
    expect(validate(capped), JSON.stringify(validate.errors)).toBe(true);
  });

  it.each<[string, (v: Values) => void]>([
    ['a single replica', (v) => (v.services.cards.replicas = 1)],
    ['an HPA that can scale below two replicas', (v) => (v.defaults.autoscaling.minReplicas = 1)],
    ['an unknown colour', (v) => (v.activeColor = 'purple')],
    ['switching to a colour that is not deployed', (v) => (v.activeColor = 'green')],
    ['a canary without the idle colour deployed', (v) => (v.canary = { enabled: true, weight: 10 })],
    ['a canary weight above 100', (v) => (v.canary.weight = 150)],
    ['a writable root filesystem', (v) => (v.securityContext.readOnlyRootFilesystem = false)],
    ['running as root', (v) => (v.podSecurityContext.runAsNonRoot = false)],
    ['keeping Linux capabilities', (v) => (v.securityContext.capabilities = { drop: ['NET_RAW'] })],
    ['a public subgraph', (v) => (v.services.cards.public = true)],
    ['a database URL in plain env', (v) => (v.services.charges.env.DATABASE_URL = 'postgres://u:p@db/ghostpay')],
    ['a privileged port', (v) => (v.services.bridge.port = 80)],
    ['a lower-case env name', (v) => (v.services.auth.env.jwt_issuer = 'x')],
    ['a secret name outside the contract', (v) => (v.services.cards.secrets = ['pan-key'])],
    ['a missing service', (v) => delete v.services.analytics],
    ['an unknown top-level key', (v) => (v.replicaCount = 3)],
    ['mTLS without TLS', (v) => (v.tls = { ...v.tls, enabled: false, mtls: true })],
    ['a JWKS client certificate without its key', (v) => delete v.tls.fileEnv.router.jwksKey],
    ['an image tag with a space', (v) => (v.colors.blue.imageTag = 'latest build')],
    ['no connection at all', (v) => (v.defaults.maxConnections = 0)],
    ['a fractional connection cap', (v) => (v.services.router.maxConnections = 2.5)],
    ['MAX_CONNECTIONS in plain env (maxConnections sets it)', (v) => (v.services.charges.env.MAX_CONNECTIONS = '500')],
  ])('rejects %s', (_what, change) => {
    expect(validate(withChange(change))).toBe(false);
  });
});

/**
 * The `{{ … }}` actions of a Go template, scanned the way text/template's lexer does:
 * quoted strings and comments inside an action may contain braces.
 */
function templateActions(text: string): string[] {
  return templateActionsAt(text).map(({ action }) => action);
}

/** Each `{{ … }}` action with the offset it starts at. */
function templateActionsAt(text: string): { action: string; at: number }[] {
  const actions: { action: string; at: number }[] = [];
  let i = text.indexOf('{{');
  while (i !== -1) {
    let j = i + 2;
    let quote: string | undefined;
    for (; j < text.length; j++) {
      const c = text[j]!;
      if (quote) {
        if (c === '\\' && quote === '"') j++;
        else if (c === quote) quote = undefined;
      } else if (c === '"' || c === '`') quote = c;
      else if (text.startsWith('/*', j)) j = text.indexOf('*/', j) + 1;
      else if (text.startsWith('}}', j)) break;
    }
    actions.push({
      action: text
        .slice(i + 2, j)
        .replace(/^-\s*/, '')
        .replace(/\s*-$/, '')
        .trim(),
      at: i,
    });
    i = text.indexOf('{{', j + 2);
  }
  return actions;
}

describe('chart templates', () => {
  const templates = repoPath(`${chart}/templates`);
  const readTemplate = (file: string) => readRepoFile(`${chart}/templates/${file}`);

  it.each(deployedServices())('deploys %s with a Deployment, Service, HPA and PDB', (service) => {
    expect(Object.keys(values.services)).toContain(service);
    const expected = { deployment: 'ghostpay.deployment', service: 'ghostpay.serviceResources', hpa: 'ghostpay.hpa', pdb: 'ghostpay.pdb' };
    for (const [file, define] of Object.entries(expected)) {
      expect(existsSync(`${templates}/${service}/${file}.yaml`), `${service}/${file}.yaml`).toBe(true);
      expect(readTemplate(`${service}/${file}.yaml`)).toContain(`include "${define}" (dict "root" . "name" "${service}")`);
    }
  });

  it('defines each of those resources with the right kind', () => {
    const kinds: Record<string, [string, string[]]> = {
      '_deployment.tpl': ['ghostpay.deployment', ['kind: Deployment']],
      '_service.tpl': ['ghostpay.serviceResources', ['kind: Service']],
      '_hpa.tpl': ['ghostpay.hpa', ['kind: HorizontalPodAutoscaler', 'name: cpu', 'name: memory']],
      '_pdb.tpl': ['ghostpay.pdb', ['kind: PodDisruptionBudget']],
    };
    for (const [file, [define, snippets]] of Object.entries(kinds)) {
      const text = readTemplate(file);
      expect(text).toContain(`define "${define}"`);
      for (const snippet of snippets) expect(text, `${file}: ${snippet}`).toContain(snippet);
    }
  });

  it('gives every pod probes, a preStop drain, zone and host spreading and a locked-down security context', () => {
    const deployment = readTemplate('_deployment.tpl');
    for (const snippet of [
      'startupProbe:',
      'livenessProbe:',
      'path: /healthz',
      'readinessProbe:',
      'path: /readyz',
      'preStop:',
      'topologyKey: {{ $root.Values.topologySpread.zoneKey }}',
      'topologyKey: kubernetes.io/hostname',
      'toYaml $root.Values.securityContext',
      'toYaml $root.Values.podSecurityContext',
      'toYaml $svc.resources',
      'vault.hashicorp.com/agent-inject',
    ]) {
      expect(deployment, snippet).toContain(snippet);
    }
    expect(values.topologySpread.zoneKey).toBe('topology.kubernetes.io/zone');
  });

  it('references only values that exist in values.yaml', () => {
    const files = readdirSync(templates, { recursive: true, encoding: 'utf8' }).filter((f) => /\.(ya?ml|tpl|txt)$/.test(f));
    const missing: string[] = [];
    for (const file of files) {
      for (const [, match] of readTemplate(file).matchAll(/\.Values\.([A-Za-z0-9_.]+)/g)) {
        const path = match!.replace(/\.+$/, '');
        let node: unknown = values;
        for (const key of path.split('.')) {
          if (node === null || typeof node !== 'object' || !(key in node)) {
            missing.push(`${file}: .Values.${path}`);
            break;
          }
          node = (node as Record<string, unknown>)[key];
        }
      }
    }
    expect(missing).toEqual([]);
  });

  it('balances every {{ }} action and control block', () => {
    const files = readdirSync(templates, { recursive: true, encoding: 'utf8' }).filter((f) => /\.(ya?ml|tpl|txt)$/.test(f));
    for (const file of files) {
      const text = readTemplate(file);
      const actions = templateActions(text);
      let depth = 0;
      for (const action of actions) {
        if (/^(if|range|with|define|block)\b/.test(action)) depth++;
        else if (/^end\b/.test(action)) depth--;
        expect(depth, `${file}: unbalanced at {{ ${action} }}`).toBeGreaterThanOrEqual(0);
      }
      expect(depth, `${file}: unclosed blocks`).toBe(0);
    }
  });

  it('ships the dashboards in grafana/dashboards unchanged', () => {
    for (const file of readdirSync(repoPath('grafana/dashboards'))) {
      expect(readRepoFile(`${chart}/files/dashboards/${file}`), file).toBe(readRepoFile(`grafana/dashboards/${file}`));
    }
  });
});

// --- Env: every name the chart writes is one the container reads ------------------------------

const templatesDir = repoPath(`${chart}/templates`);
const templateFiles = readdirSync(templatesDir, { recursive: true, encoding: 'utf8' }).filter((f) => /\.(ya?ml|tpl)$/.test(f));
const readTemplateFile = (file: string) => readRepoFile(`${chart}/templates/${file}`);

/** Literal env names the templates write (the values they carry come from values.yaml). */
const templateEnv = [
  'HOST',
  'NODE_ENV',
  'LOG_LEVEL',
  'SHUTDOWN_TIMEOUT_MS',
  'MAX_CONNECTIONS',
  'SECRETS_DIR',
  'DATABASE_URL',
  'REDIS_URL',
  'MONGODB_URL',
];
/** Read by Node itself when the process starts, not by any config schema: the extra CAs its TLS clients trust. */
const nodeEnv = ['NODE_EXTRA_CA_CERTS'];
/** The `tls.fileEnv.<service>` fields _tls.tpl writes as env names (`serverTls` is a flag, not a name). */
const fileEnvFields = ['cert', 'key', 'serverCert', 'serverKey', 'jwksCert', 'jwksKey', 'ca', 'clientCa'];
/** Env names a template takes from values, by the expression that writes them. */
const valueNamedEnv = ['{{ $svc.portEnv }}', '{{ $key }}', ...fileEnvFields.map((field) => `{{ .${field} }}`)];
const connectionEnv: Record<string, string> = { database: 'DATABASE_URL', redis: 'REDIS_URL', mongodb: 'MONGODB_URL' };
/**
 * The block that guards both the tls volume (the Secret with tls.crt, tls.key and ca.crt) and
 * NODE_EXTRA_CA_CERTS: the CA file exists in the container exactly when `tls.enabled`.
 */
const caMountedCondition = 'if $root.Values.tls.enabled';

/** One container env entry of a template: `- name: <name>` followed by `value:` or `valueFrom:`. */
interface EnvEntry {
  file: string;
  name: string;
  value: string;
  at: number;
}

/** Every container env entry in every template, wherever it is written (_deployment.tpl, _tls.tpl, …). */
function envEntries(): EnvEntry[] {
  return templateFiles.flatMap((file) =>
    [...readTemplateFile(file).matchAll(/^[ \t]*- name: (.+?)[ \t]*\n[ \t]*(value(?:From)?:.*)$/gm)].map((m) => ({
      file,
      name: m[1]!,
      value: m[2]!,
      at: m.index,
    })),
  );
}

/** The `if`/`with`/`range`/`define` actions open at an offset of a template, outermost first. */
function openBlocksAt(text: string, offset: number): string[] {
  const open: string[] = [];
  for (const { action, at } of templateActionsAt(text)) {
    if (at >= offset) break;
    if (/^(if|range|with|define|block)\b/.test(action)) open.push(action);
    else if (/^else\b/.test(action)) open.push(`${action} (after ${open.pop()})`);
    else if (/^end\b/.test(action)) open.pop();
  }
  return open;
}

interface TlsSettings {
  tls: boolean;
  mtls: boolean;
}
const tlsSettings: Record<string, TlsSettings> = {
  'TLS off': { tls: false, mtls: false },
  'tls.enabled': { tls: true, mtls: false },
  'tls.mtls': { tls: true, mtls: true },
};

/** _tls.tpl's helpers, rendered with the values under test (helm does not run here). */
const tlsTemplates = new Renderer(readTemplateFile('_tls.tpl'));
const tlsDir = tlsTemplates.include('ghostpay.tlsDir', {});

/** The env `ghostpay.tlsEnv` renders for one service, as `_deployment.tpl` includes it. */
function renderedTlsEnv(v: Values, name: string, settings: TlsSettings): { name: string; value: string }[] {
  const Values = { ...v, tls: { ...v.tls, enabled: settings.tls, mtls: settings.mtls } };
  return (parse(tlsTemplates.include('ghostpay.tlsEnv', { root: { Values }, name })) ?? []) as { name: string; value: string }[];
}

/** What the chart sets for one service: _deployment.tpl (modelled) and _tls.tpl's `ghostpay.tlsEnv` (rendered). */
function chartEnvNames(v: Values, name: string, settings: TlsSettings): string[] {
  const svc = v.services[name];
  const names = [svc.portEnv, 'HOST', 'NODE_ENV', 'LOG_LEVEL', 'SHUTDOWN_TIMEOUT_MS', 'MAX_CONNECTIONS'];
  if (v.vault.enabled && svc.secrets?.length > 0) names.push('SECRETS_DIR');
  for (const connection of svc.connections as string[]) names.push(connectionEnv[connection]!);
  names.push(...renderedTlsEnv(v, name, settings).map((entry) => entry.name));
  names.push(...Object.keys(svc.env));
  return names.map(String);
}

interface ZodLike {
  shape?: Record<string, { parse(v: unknown): unknown }>;
}
type Shape = Record<string, { parse(v: unknown): unknown }>;

/**
 * The env a service's code reads: every `*ConfigSchema` its package exports and its main.ts
 * loads, and platform's `serverTlsConfigSchema` when main.ts calls `loadServerTlsConfig`. Both
 * failures (the package does not import, or main.ts loads none of its schemas) fail that
 * service's tests, with the reason: a chart checked against nothing is not a passing check.
 */
async function envReadBy(name: ServiceName): Promise<{ shape?: Shape; serverTls: boolean; reason?: string }> {
  const { pkg, main: mainFile } = contract[name];
  const main = readRepoFile(mainFile);
  const serverTls = /\bloadServerTlsConfig\(/.test(main);
  let exports: Record<string, unknown>;
  try {
    exports = await import(pkg);
  } catch (error) {
    return { serverTls, reason: `${pkg} failed to import: ${(error as Error).stack ?? String(error)}` };
  }
  const loaded = Object.keys(exports).filter((key) => key.endsWith('ConfigSchema') && new RegExp(`\\b${key}\\b`).test(main));
  const shapes = loaded.map((key) => (exports[key] as ZodLike).shape).filter((s): s is Shape => Boolean(s));
  if (shapes.length === 0) {
    return {
      serverTls,
      reason: `${mainFile} loads no *ConfigSchema zod object that ${pkg} exports (exports: ${Object.keys(exports).join(', ')})`,
    };
  }
  return { shape: Object.assign({}, ...shapes), serverTls };
}

// Resolved before the tests are collected; a service whose schema cannot be read fails its tests.
const readers = Object.fromEntries(
  await Promise.all((Object.keys(contract) as ServiceName[]).map(async (name) => [name, await envReadBy(name)] as const)),
) as Record<ServiceName, Awaited<ReturnType<typeof envReadBy>>>;

/** The names the chart sets for a service that its code (or Node) does not read. */
function unreadEnv(v: Values, name: ServiceName, settings: TlsSettings): string[] {
  const { shape, serverTls, reason } = readers[name];
  if (!shape) throw new Error(`cannot check the chart's env for ${name}: ${reason}`);
  const read = new Set([
    ...Object.keys(shape),
    ...(serverTls ? Object.keys(serverTlsConfigSchema.shape) : []),
    // Node reads NODE_EXTRA_CA_CERTS at start and fails on a file that is not there.
    ...(settings.tls ? nodeEnv : []),
  ]);
  // OTEL_* are read by the OpenTelemetry SDK.
  return chartEnvNames(v, name, settings).filter((env) => !read.has(env) && !env.startsWith('OTEL_'));
}

describe('chart env and ports match the services', () => {
  it('writes only the env names this test models, in every template that writes container env', () => {
    const entries = envEntries();
    const unmodelled = entries
      .filter(
        ({ name }) => !templateEnv.includes(name) && !nodeEnv.includes(name) && !valueNamedEnv.includes(name) && !name.startsWith('OTEL_'),
      )
      .map(({ file, name }) => `${file}: ${name}`);
    expect(unmodelled).toEqual([]);
    // …and the model holds nothing the templates no longer write.
    const written = new Set(entries.map(({ name }) => name));
    expect([...templateEnv, ...nodeEnv, ...valueNamedEnv].filter((name) => !written.has(name))).toEqual([]);
    // `{{ $key }}` is a key of services.<name>.env.
    for (const entry of entries.filter(({ name }) => name === '{{ $key }}')) {
      expect(openBlocksAt(readTemplateFile(entry.file), entry.at)).toContain('range $key, $value := $svc.env');
    }
  });

  it('names in tls.fileEnv only fields _tls.tpl writes (and the serverTls flag)', () => {
    const fileEnv = values.tls.fileEnv as Record<string, Record<string, unknown>>;
    const unknown = Object.entries(fileEnv).flatMap(([service, files]) =>
      Object.keys(files)
        .filter((field) => field !== 'serverTls' && !fileEnvFields.includes(field))
        .map((field) => `tls.fileEnv.${service}.${field}`),
    );
    expect(unknown).toEqual([]);
  });

  it('writes NODE_EXTRA_CA_CERTS only where the CA file is mounted, and names that file', () => {
    const entries = envEntries().filter(({ name }) => nodeEnv.includes(name));
    expect(entries.map(({ file, value }) => `${file}: ${value}`)).toEqual(['_tls.tpl: value: {{ $dir }}/ca.crt']);
    const tls = readTemplateFile('_tls.tpl');
    const blocks = openBlocksAt(tls, entries[0]!.at);
    expect(blocks).toContain(caMountedCondition);
    expect(blocks[0]).toBe('define "ghostpay.tlsEnv"');
    expect(tls).toContain('{{- define "ghostpay.tlsEnv" -}}\n{{- $root := .root -}}\n{{- $dir := include "ghostpay.tlsDir" . -}}');
    const deployment = readTemplateFile('_deployment.tpl');
    const mount = /- name: tls\n\s+mountPath: \{\{ include "ghostpay\.tlsDir" \$root \}\}/.exec(deployment);
    const volume = /- name: tls\n\s+secret:\n\s+secretName: \{\{ printf "%s-%s-tls"/.exec(deployment);
    expect(mount, 'the tls volume mounted at ghostpay.tlsDir').not.toBeNull();
    expect(volume, 'the tls volume is the service’s <release>-<service>-tls Secret').not.toBeNull();
    expect(openBlocksAt(deployment, mount!.index)).toContain(caMountedCondition);
    expect(openBlocksAt(deployment, volume!.index)).toContain(caMountedCondition);
  });

  it('points the router at its colour’s analytics ingest and trusts the bridge manifest the router image ships', () => {
    const env = values.services.router.env as Record<string, string>;
    expect(env.ROUTER_ANALYTICS_URL).toMatch(/-analytics-\{\{ \.color \}\}:4004\/internal\/events$/);
    const manifest = env.ROUTER_PQ_MANIFESTS;
    expect(manifest).toBe('/app/openapi-bridge/persisted-queries.json');
    expect(readRepoFile('router/Dockerfile')).toContain('COPY openapi-bridge/persisted-queries.json openapi-bridge/persisted-queries.json');
    expect(JSON.parse(readRepoFile('openapi-bridge/persisted-queries.json'))).toBeTruthy();
  });

  it.each(Object.entries(contract))('listens on the contract port for %s', (name, { portEnv, port }) => {
    expect(values.services[name]).toMatchObject({ portEnv, port });
  });

  for (const [name, { pkg }] of Object.entries(contract) as [ServiceName, (typeof contract)[ServiceName]][]) {
    it(`sets only env names ${pkg} reads (TLS off, tls.enabled, tls.mtls), and its port default is the chart's port`, () => {
      for (const [label, settings] of Object.entries(tlsSettings)) expect(unreadEnv(values, name, settings), label).toEqual([]);
      expect(readers[name].shape![contract[name].portEnv]!.parse(undefined)).toBe(values.services[name].port);
    });

    it(`gives ${pkg} a MAX_CONNECTIONS it accepts, the service's own default unless maxConnections is set`, () => {
      const maxConnections = values.services[name].maxConnections ?? values.defaults.maxConnections;
      const schema = readers[name].shape!.MAX_CONNECTIONS!;
      // The template writes the value as a string (int64 | quote), as env always is.
      expect(schema.parse(String(maxConnections))).toBe(maxConnections);
      expect(schema.parse(undefined)).toBe(values.defaults.maxConnections);
    });
  }
});

describe('tls.mtls: every JWT verifier presents its certificate to auth, which demands one like every subgraph', () => {
  const mtls = tlsSettings['tls.mtls']!;
  const services = Object.keys(contract) as ServiceName[];
  /** The services whose config reads platform's JWT verifier env (jwtVerifierEnv, JWKS_TLS_* included). */
  const verifiers = services.filter((name) => readers[name].shape && 'JWKS_URL' in readers[name].shape!);
  const envOf = (name: string) => Object.fromEntries(renderedTlsEnv(values, name, mtls).map((entry) => [entry.name, entry.value]));

  it('finds the verifiers from their config schemas, and they are the services the chart gives a JWKS_URL', () => {
    expect(Object.keys(jwtVerifierEnv)).toEqual(expect.arrayContaining(['JWKS_URL', 'JWKS_TLS_CERT_FILE', 'JWKS_TLS_KEY_FILE']));
    expect(verifiers).toEqual(expect.arrayContaining(['router', 'cards', 'charges', 'analytics']));
    expect(verifiers.sort()).toEqual(services.filter((name) => 'JWKS_URL' in values.services[name].env).sort());
  });

  it.each(verifiers)('%s: JWKS_TLS_CERT_FILE / JWKS_TLS_KEY_FILE name its pod certificate (tls.crt, tls.key)', (name) => {
    const env = envOf(name);
    expect(env).toMatchObject({ JWKS_TLS_CERT_FILE: `${tlsDir}/tls.crt`, JWKS_TLS_KEY_FILE: `${tlsDir}/tls.key` });
    // The internal CA is trusted through NODE_EXTRA_CA_CERTS; JWKS_TLS_CA_FILE is optional.
    expect(env.NODE_EXTRA_CA_CERTS).toBe(`${tlsDir}/ca.crt`);
  });

  it.each(deployedServices().filter((name) => !['router', 'bridge'].includes(name)))(
    '%s (a subgraph): demands client certificates (TLS_CLIENT_CA_FILE, read through platform’s server TLS)',
    (name) => {
      expect(readers[name as ServiceName].serverTls, `${name} main.ts loads server TLS`).toBe(true);
      expect(envOf(name).TLS_CLIENT_CA_FILE).toBe(`${tlsDir}/ca.crt`);
      // …so it is probed by an exec and scraped with Prometheus's client certificate.
      expect(
        tlsTemplates.include('ghostpay.requiresClientCert', {
          root: { Values: { ...values, tls: { ...values.tls, enabled: true, mtls: true } } },
          name,
        }),
      ).toBe('true');
    },
  );
});

describe('the env check catches a chart that sets a name its service does not read', () => {
  const on = tlsSettings['tls.enabled']!;
  const mtls = tlsSettings['tls.mtls']!;

  it('a TLS file env name no code reads', () => {
    const bogus = withChange((v) => (v.tls.fileEnv.router.serverKey = 'TLS_PRIVATE_KEY_FILE'));
    expect(unreadEnv(bogus, 'router', on)).toEqual(['TLS_PRIVATE_KEY_FILE']);
    expect(unreadEnv(bogus, 'router', tlsSettings['TLS off']!)).toEqual([]);
  });

  it.each(Object.keys(contract) as ServiceName[])('%s: TLS_CLIENT_CA_FILE is read only when its main.ts loads server TLS', (name) => {
    const withClientCa = withChange((v) => (v.tls.fileEnv[name] = { ...v.tls.fileEnv[name], clientCa: 'TLS_CLIENT_CA_FILE' }));
    expect(unreadEnv(withClientCa, name, mtls)).toEqual(readers[name].serverTls ? [] : ['TLS_CLIENT_CA_FILE']);
    // Written only with tls.mtls.
    expect(unreadEnv(withClientCa, name, on)).toEqual([]);
  });

  it.each(['auth', 'bridge'] as const)('%s: a JWKS client certificate env on a service that verifies no JWT', (name) => {
    const withJwks = withChange(
      (v) => (v.tls.fileEnv[name] = { ...v.tls.fileEnv[name], jwksCert: 'JWKS_TLS_CERT_FILE', jwksKey: 'JWKS_TLS_KEY_FILE' }),
    );
    expect(unreadEnv(withJwks, name, on)).toEqual(['JWKS_TLS_CERT_FILE', 'JWKS_TLS_KEY_FILE']);
    expect(unreadEnv(withJwks, name, tlsSettings['TLS off']!)).toEqual([]);
  });

  it('NODE_EXTRA_CA_CERTS where no CA file is mounted', () => {
    const withoutMount = withChange((v) => (v.services.cards.env.NODE_EXTRA_CA_CERTS = '/etc/ghostpay/tls/ca.crt'));
    expect(unreadEnv(withoutMount, 'cards', tlsSettings['TLS off']!)).toEqual(['NODE_EXTRA_CA_CERTS']);
  });
});
