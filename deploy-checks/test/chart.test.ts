import { existsSync, readdirSync } from 'node:fs';
import { serverTlsConfigSchema } from '@ghostpay/platform';
import { Ajv } from 'ajv';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { readRepoFile, repoPath } from '../src/repo.ts';

const chart = 'charts/ghostpay';
// biome-ignore lint/suspicious/noExplicitAny: free-form YAML that the tests mutate by path; the schema is what types it.
type Values = Record<string, any>;
const values = parse(readRepoFile(`${chart}/values.yaml`)) as Values;
const schema = JSON.parse(readRepoFile(`${chart}/values.schema.json`));
// strict: unknown keywords in the schema are errors; strictTypes off because if/then branches name no type.
const ajv = new Ajv({ allErrors: true, strict: true, strictTypes: false });
const validate = ajv.compile(schema);

/** The port contract between engineers (helper guide): service → package, port env, default port. */
const contract = {
  router: { pkg: '@ghostpay/router', portEnv: 'ROUTER_PORT', port: 4000 },
  auth: { pkg: '@ghostpay/auth', portEnv: 'AUTH_PORT', port: 4001 },
  cards: { pkg: '@ghostpay/cards', portEnv: 'CARDS_PORT', port: 4002 },
  charges: { pkg: '@ghostpay/charges', portEnv: 'CHARGES_PORT', port: 4003 },
  analytics: { pkg: '@ghostpay/analytics', portEnv: 'ANALYTICS_PORT', port: 4004 },
  bridge: { pkg: '@ghostpay/openapi-bridge', portEnv: 'BRIDGE_PORT', port: 8080 },
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
    ['an image tag with a space', (v) => (v.colors.blue.imageTag = 'latest build')],
  ])('rejects %s', (_what, change) => {
    expect(validate(withChange(change))).toBe(false);
  });
});

/**
 * The `{{ … }}` actions of a Go template, scanned the way text/template's lexer does:
 * quoted strings and comments inside an action may contain braces.
 */
function templateActions(text: string): string[] {
  const actions: string[] = [];
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
    actions.push(
      text
        .slice(i + 2, j)
        .replace(/^-\s*/, '')
        .replace(/\s*-$/, '')
        .trim(),
    );
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

/** Env names the chart's deployment template writes itself (everything else comes from values). */
const templateEnv = ['HOST', 'NODE_ENV', 'LOG_LEVEL', 'SHUTDOWN_TIMEOUT_MS', 'SECRETS_DIR', 'DATABASE_URL', 'REDIS_URL', 'MONGODB_URL'];
const connectionEnv: Record<string, string> = { database: 'DATABASE_URL', redis: 'REDIS_URL', mongodb: 'MONGODB_URL' };

/** What the chart sets for one service, following _deployment.tpl. */
function chartEnvNames(name: ServiceName): string[] {
  const svc = values.services[name];
  const names = [svc.portEnv, 'HOST', 'NODE_ENV', 'LOG_LEVEL', 'SHUTDOWN_TIMEOUT_MS'];
  for (const connection of svc.connections as string[]) names.push(connectionEnv[connection]!);
  const tlsEnv = values.tls.fileEnv?.[name];
  if (tlsEnv) names.push(...[tlsEnv.cert, tlsEnv.key, tlsEnv.ca, tlsEnv.clientCa].filter((n): n is string => Boolean(n)));
  names.push(...Object.keys(svc.env));
  return names;
}

interface ZodLike {
  shape?: Record<string, { parse(v: unknown): unknown }>;
}

/**
 * The service's `*ConfigSchema` zod object, or why there is none. Both failures (the package
 * does not import, or it exports no config schema) fail that service's test below, with the
 * reason: a chart checked against nothing is not a passing check.
 */
async function configShapeOf(pkg: string): Promise<{ shape?: Record<string, { parse(v: unknown): unknown }>; reason?: string }> {
  let exports: Record<string, unknown>;
  try {
    exports = await import(pkg);
  } catch (error) {
    return { reason: `${pkg} failed to import: ${(error as Error).stack ?? String(error)}` };
  }
  const name = Object.keys(exports).find((key) => key.endsWith('ConfigSchema'));
  const shape = name ? (exports[name] as ZodLike).shape : undefined;
  if (!shape) return { reason: `${pkg} exports no *ConfigSchema zod object (exports: ${Object.keys(exports).join(', ')})` };
  return { shape };
}

// Resolved before the tests are collected; a service whose schema cannot be read fails its test.
const shapes = Object.fromEntries(
  await Promise.all(Object.entries(contract).map(async ([name, { pkg }]) => [name, await configShapeOf(pkg)] as const)),
);

describe('chart env and ports match the services', () => {
  it('writes only the env names this test models', () => {
    const written = [...readRepoFile(`${chart}/templates/_deployment.tpl`).matchAll(/- name: ([A-Z][A-Z0-9_]*)\b/g)].map((m) => m[1]!);
    expect(written.filter((n) => !templateEnv.includes(n) && !n.startsWith('OTEL_'))).toEqual([]);
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
    it(`sets only env names ${pkg} reads, and its port default is the chart's port`, () => {
      const { shape, reason } = shapes[name]!;
      if (!shape) throw new Error(`cannot check the chart's env for ${name}: ${reason}`);
      // Subgraphs also read platform's server TLS env (serverTlsConfigSchema).
      const keys = new Set([
        ...Object.keys(shape),
        ...(name === 'router' || name === 'bridge' ? [] : Object.keys(serverTlsConfigSchema.shape)),
      ]);
      // SECRETS_DIR is read by the platform secrets provider for every service (README: "all");
      // OTEL_* by the OpenTelemetry SDK.
      const unknown = chartEnvNames(name).filter((env) => !keys.has(env));
      expect(unknown).toEqual([]);
      expect(shape[contract[name].portEnv]!.parse(undefined)).toBe(values.services[name].port);
    });
  }
});
