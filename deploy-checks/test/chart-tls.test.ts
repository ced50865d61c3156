/**
 * The chart's TLS and mTLS settings against what the services really do. helm does not run
 * here, so the templates are read as text; what they make a pod do (the probe command, the CA
 * Node trusts) is then run against real servers built with the platform's own TLS options, the
 * code path every subgraph serves through.
 */
import { execFile } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { analyticsConfigSchema } from '@ghostpay/analytics';
import { authConfigSchema } from '@ghostpay/auth';
import { cardsConfigSchema } from '@ghostpay/cards';
import { chargesConfigSchema } from '@ghostpay/charges';
import { bridgeConfigSchema } from '@ghostpay/openapi-bridge';
import {
  createLogger,
  createMetricsRegistry,
  createServiceServer,
  jwtVerifierEnv,
  jwtVerifierOptionsFrom,
  type ServiceServer,
  sendJson,
  serverTlsConfigSchema,
  serverTlsOptions,
  serverTlsProblems,
} from '@ghostpay/platform';
import { routerConfigSchema } from '@ghostpay/router';
import { createTestTokenIssuer, issueTestCertificate, testAudience, testCertificateAuthority, testIssuer } from '@ghostpay/test-support';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { Renderer } from '../src/go-template.ts';
import { readRepoFile, repoPath } from '../src/repo.ts';

const chart = 'charts/ghostpay';
const template = (file: string) => readRepoFile(`${chart}/templates/${file}`);
// Read leniently so a chart without the TLS helpers fails each test rather than the file.
const tlsTpl = existsSync(repoPath(`${chart}/templates/_tls.tpl`)) ? template('_tls.tpl') : '';
const deploymentTpl = template('_deployment.tpl');

interface FileEnv {
  cert: string;
  key: string;
  ca?: string;
  clientCa?: string;
  serverCert?: string;
  serverKey?: string;
  jwksCert?: string;
  jwksKey?: string;
  serverTls: boolean;
}
const configSchemas: Record<string, { shape: Record<string, { parse(v: unknown): unknown }> }> = {
  router: routerConfigSchema,
  auth: authConfigSchema,
  cards: cardsConfigSchema,
  charges: chargesConfigSchema,
  analytics: analyticsConfigSchema,
  bridge: bridgeConfigSchema,
};
const values = parse(readRepoFile(`${chart}/values.yaml`)) as {
  services: Record<string, { env: Record<string, string> }>;
  tls: { enabled: boolean; mtls: boolean; fileEnv: Record<string, FileEnv> };
};

/** The body of `{{ define "<name>" }}` in a template file. */
function defineBody(text: string, name: string): string {
  const start = text.indexOf(`define "${name}"`);
  expect(start, `define "${name}"`).toBeGreaterThan(-1);
  const end = text.indexOf('{{- end -}}\n', start);
  return text.slice(start, end === -1 ? undefined : end);
}

/** The directory the chart mounts each service's certificate Secret at (tls.crt, tls.key, ca.crt). */
function mountedTlsDir(): string {
  const dir = /define "ghostpay\.tlsDir" -}}([^{]+){{/.exec(tlsTpl)?.[1];
  expect(dir, 'ghostpay.tlsDir').toBeTruthy();
  expect(deploymentTpl).toMatch(/- name: tls\n\s+mountPath: \{\{ include "ghostpay\.tlsDir" \$root \}\}\n\s+readOnly: true/);
  return dir!;
}

const work = mkdtempSync(join(tmpdir(), 'ghostpay-chart-tls-'));
const run = promisify(execFile);

/**
 * A CA and, in `<dir>/{tls.crt,tls.key,ca.crt}` as cert-manager writes the Secret, a pod
 * certificate issued for server and client auth (certificates.yaml: usages [server auth,
 * client auth]) naming the Service and 127.0.0.1.
 */
function issuePodCertificate(dir: string) {
  mkdirSync(dir, { recursive: true });
  testCertificateAuthority(work, 'ca');
  issueTestCertificate(work, 'pod', { usage: 'both', dnsNames: ['ghostpay-cards-blue'] });
  copyFileSync(join(work, 'ca.pem'), join(dir, 'ca.crt'));
  copyFileSync(join(work, 'pod.pem'), join(dir, 'tls.crt'));
  copyFileSync(join(work, 'pod.key'), join(dir, 'tls.key'));
}

/**
 * A service as the subgraphs serve: the platform server with platform's server TLS options, from
 * the given server TLS env (what the chart renders for the service), or from the chart's file env.
 */
async function startService(
  dir: string,
  options: {
    clientCa?: boolean;
    env?: Record<string, string>;
    ready?: () => boolean;
    routes?: Record<string, unknown>;
    onRequest?: (url: string) => void;
  },
) {
  const config = serverTlsConfigSchema.parse(
    options.env ?? {
      TLS_CERT_FILE: join(dir, 'tls.crt'),
      TLS_KEY_FILE: join(dir, 'tls.key'),
      ...(options.clientCa ? { TLS_CLIENT_CA_FILE: join(dir, 'ca.crt') } : {}),
      TLS_RELOAD_INTERVAL_MS: '10000',
    },
  );
  expect(serverTlsProblems(config)).toEqual([]);
  const tls = serverTlsOptions(config);
  const server = createServiceServer({
    service: 'cards',
    logger: createLogger({ service: 'cards', level: 'silent' }),
    registry: createMetricsRegistry('cards'),
    tls,
    readiness: [
      {
        name: 'database',
        check: async () => {
          if (options.ready && !options.ready()) throw new Error('down');
        },
      },
    ],
    handler: (req, res) => {
      options.onRequest?.(req.url ?? '');
      const body = options.routes?.[req.url ?? ''];
      if (body === undefined) sendJson(res, 404, {});
      else sendJson(res, 200, body);
    },
  });
  const { port } = await server.listen(0);
  return { server, port };
}

const dir = join(work, 'etc-ghostpay-tls');
const servers: ServiceServer[] = [];
beforeAll(() => issuePodCertificate(dir));
afterAll(async () => {
  await Promise.all(servers.map((s) => s.close()));
  rmSync(work, { recursive: true, force: true });
});

describe('tls.enabled: every service trusts the internal CA', () => {
  it('sets NODE_EXTRA_CA_CERTS to the mounted ca.crt in every container', () => {
    const env = defineBody(tlsTpl, 'ghostpay.tlsEnv');
    expect(env).toMatch(/if \$root\.Values\.tls\.enabled }}\n- name: NODE_EXTRA_CA_CERTS\n {2}value: \{\{ \$dir }}\/ca\.crt/);
    expect(env).toContain('$dir := include "ghostpay.tlsDir"');
    expect(deploymentTpl).toContain('include "ghostpay.tlsEnv" (dict "root" $root "name" $name)');
    mountedTlsDir();
    // cert-manager writes ca.crt into the Secret the pod mounts.
    expect(template('certificates.yaml')).toContain('secretName: {{ $full }}-{{ $name }}-tls');
    expect(deploymentTpl).toContain('secretName: {{ printf "%s-%s-tls" (include "ghostpay.fullname" $root) $name }}');
  });

  it('lets a JWT verifier started with that env fetch the JWKS from auth over https; without it every token is refused', async () => {
    const issuer = await createTestTokenIssuer();
    const auth = await startService(dir, { clientCa: false, routes: { '/.well-known/jwks.json': issuer.jwks } });
    servers.push(auth.server);
    const token = await issuer.mint({ userId: 'user-1', role: 'merchant' });
    // A fresh process: Node reads NODE_EXTRA_CA_CERTS once, at start.
    const script = `
      const { createJwtVerifier } = await import('@ghostpay/platform');
      const verifier = createJwtVerifier({ jwksUrl: process.env.JWKS_URL, issuer: ${JSON.stringify(testIssuer)}, audience: ${JSON.stringify(testAudience)}, jwksStaleGraceMs: 0 });
      try { const principal = await verifier.verify(process.env.TOKEN); console.log('verified ' + principal.userId); }
      catch (error) { console.log('refused ' + (error.extensions?.code ?? error.message)); }`;
    const verify = async (extraEnv: Record<string, string>) => {
      const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], {
        cwd: repoPath('deploy-checks'),
        env: { PATH: process.env.PATH, TOKEN: token, JWKS_URL: `https://127.0.0.1:${auth.port}/.well-known/jwks.json`, ...extraEnv },
      });
      return stdout.trim();
    };
    expect(await verify({ NODE_EXTRA_CA_CERTS: `${dir}/ca.crt` })).toBe('verified user-1');
    expect(await verify({})).toBe('refused SERVICE_UNAVAILABLE');
  });
});

describe('tls.mtls: services that demand client certificates', () => {
  /** The probe the chart renders for such a service, for this port, path and certificate directory. */
  function renderedExecProbe(port: number, path: string, certDir: string): string[] {
    const body = defineBody(tlsTpl, 'ghostpay.execProbe');
    const format = /printf "((?:[^"\\]|\\.)*)" \$dir \.port \.path \| quote/.exec(body)?.[1];
    expect(format, 'the probe script is a printf of $dir .port .path').toBeTruthy();
    const args = [certDir.replace(/\/$/, ''), String(port), path];
    const script = format!.replace(/%[sv]/g, () => args.shift()!);
    expect(body).toMatch(/exec:\n {2}command:\n {4}- node\n {4}- -e\n/);
    return ['-e', script];
  }
  const probe = async (port: number, path: string) => {
    try {
      await run(process.execPath, renderedExecProbe(port, path, dir), { env: { PATH: process.env.PATH } });
      return 'success';
    } catch {
      return 'failure';
    }
  };

  it('probes them by an exec, not by an httpGet kubelet makes without a client certificate', () => {
    expect(deploymentTpl).toContain('$mtlsProbe := include "ghostpay.requiresClientCert" (dict "root" $root "name" $name)');
    for (const [probe, path] of [
      ['startupProbe', '/healthz'],
      ['livenessProbe', '/healthz'],
      ['readinessProbe', '/readyz'],
    ]) {
      expect(deploymentTpl).toContain(
        `${probe}:\n            {{- if $mtlsProbe }}\n            {{- include "ghostpay.execProbe" (dict "root" $root "port" $svc.port "path" "${path}") | nindent 12 }}\n            {{- else }}\n            httpGet:`,
      );
    }
    const requires = defineBody(tlsTpl, 'ghostpay.requiresClientCert');
    expect(requires).toContain('.root.Values.tls.mtls $files.clientCa');
  });

  it('the exec probe passes on a healthy service that refuses a client without a certificate, and fails when it is not ready', async () => {
    let ready = true;
    const service = await startService(dir, { clientCa: true, ready: () => ready });
    servers.push(service.server);
    // What kubelet's httpGet does: https without a client certificate. The handshake is refused.
    const withoutCertificate = await new Promise<string>((resolve) => {
      request({ host: '127.0.0.1', port: service.port, path: '/healthz', rejectUnauthorized: false }, (res) =>
        resolve(`HTTP ${res.statusCode}`),
      )
        .on('error', () => resolve('refused'))
        .end();
    });
    expect(withoutCertificate).toBe('refused');

    expect(await probe(service.port, '/healthz')).toBe('success');
    expect(await probe(service.port, '/readyz')).toBe('success');
    ready = false;
    expect(await probe(service.port, '/readyz')).toBe('failure');
    await service.server.close();
    expect(await probe(service.port, '/healthz')).toBe('failure');
  });

  it('gives Prometheus a client certificate from the same issuer for the ServiceMonitors of those services', () => {
    const monitor = template('servicemonitor.yaml');
    expect(monitor).toMatch(
      /if include "ghostpay\.requiresClientCert" \$ctx }}[\s\S]*cert: \{ secret: \{ name: \{\{ include "ghostpay\.prometheusClientSecret" \$root }}, key: tls\.crt } }\n\s+keySecret: \{ name: \{\{ include "ghostpay\.prometheusClientSecret" \$root }}, key: tls\.key }/,
    );
    expect(monitor).toContain('scheme: {{ include "ghostpay.serviceScheme" $ctx }}');
    const certificates = template('certificates.yaml');
    expect(certificates).toMatch(/if and \$root\.Values\.tls\.mtls \$root\.Values\.monitoring\.serviceMonitor\.enabled }}/);
    expect(certificates).toContain('secretName: {{ include "ghostpay.prometheusClientSecret" $root }}');
    expect(certificates).toContain('usages: [client auth]');
  });
});

describe('tls.mtls: auth demands client certificates, and every JWT verifier presents its own on the JWKS fetch', () => {
  const mtlsValues = { ...values, tls: { ...values.tls, enabled: true, mtls: true } };
  const renderer = new Renderer(tlsTpl);
  const ctx = (name: string) => ({ root: { Values: mtlsValues }, name });
  /** The env `ghostpay.tlsEnv` renders for a service with tls.mtls, its mount directory moved to this test's certificates. */
  function renderedEnv(name: string): Record<string, string> {
    const mount = mountedTlsDir().replace(/\/$/, '');
    const entries = (parse(renderer.include('ghostpay.tlsEnv', ctx(name))) ?? []) as { name: string; value: string }[];
    return Object.fromEntries(
      entries.map(({ name: env, value }) => {
        expect(value, `${name} ${env}`).toMatch(new RegExp(`^${mount}/`));
        return [env, join(dir, value.slice(mount.length + 1))];
      }),
    );
  }
  /** The verifying services: their config schema spreads platform's jwtVerifierEnv. */
  const verifiers = Object.keys(configSchemas).filter((name) => 'JWKS_URL' in configSchemas[name]!.shape);

  it('finds the verifiers by their config schemas: the services the chart gives a JWKS_URL', () => {
    expect(verifiers).toEqual(expect.arrayContaining(['router', 'cards', 'charges', 'analytics']));
    expect(verifiers.sort()).toEqual(
      Object.keys(values.services)
        .filter((name) => 'JWKS_URL' in values.services[name]!.env)
        .sort(),
    );
    for (const name of verifiers) expect(configSchemas[name]!.shape).toHaveProperty('JWKS_TLS_CERT_FILE');
  });

  it('renders TLS_CLIENT_CA_FILE for auth, so it is probed by an exec and scraped with Prometheus’s certificate', () => {
    expect(renderedEnv('auth')).toMatchObject({ TLS_CLIENT_CA_FILE: join(dir, 'ca.crt') });
    expect(readRepoFile('subgraphs/auth/src/main.ts')).toContain('loadServerTlsConfig(');
    expect(renderer.include('ghostpay.requiresClientCert', ctx('auth'))).toBe('true');
    // Every pod certificate may be used as a client certificate.
    expect(template('certificates.yaml')).toMatch(
      /spec:\n {2}secretName: \{\{ \$full }}-\{\{ \$name }}-tls\n[\s\S]*?usages: \[server auth, client auth]/,
    );
  });

  // Auth as the chart starts it with tls.mtls, serving a JWKS; the verifiers below fetch it.
  let auth: { port: number; served: number; token: string };
  beforeAll(async () => {
    const issuer = await createTestTokenIssuer();
    const state = { port: 0, served: 0, token: await issuer.mint({ userId: 'user-1', role: 'merchant' }) };
    const started = await startService(dir, {
      env: renderedEnv('auth'),
      routes: { '/.well-known/jwks.json': issuer.jwks },
      onRequest: (url) => {
        if (url === '/.well-known/jwks.json') state.served++;
      },
    });
    servers.push(started.server);
    state.port = started.port;
    auth = state;
  });

  // The options main.ts builds (createJwtVerifier({ ...jwtVerifierOptionsFrom(config), logger })),
  // in a fresh process, which reads NODE_EXTRA_CA_CERTS at start.
  const script = `
    const { createJwtVerifier } = await import('@ghostpay/platform');
    const verifier = createJwtVerifier(JSON.parse(process.env.VERIFIER_OPTIONS));
    try { const principal = await verifier.verify(process.env.TOKEN); console.log('verified ' + principal.userId); }
    catch (error) { console.log('refused ' + (error.extensions?.code ?? error.message)); }`;
  /** Verifies a token as service `name` started with `env` would: its config schema parses the env. */
  async function verifyAs(name: string, env: Record<string, string>) {
    // The chart's JWKS_URL (its Service name → loopback), this test's issuer and audience, no stale grace.
    const scheme = renderer.include('ghostpay.serviceScheme', ctx('auth'));
    const jwksUrl = values.services[name]!.env.JWKS_URL!.replace('{{ .schemes.auth }}', scheme).replace(
      /\/\/[^/]+/,
      `//127.0.0.1:${auth.port}`,
    );
    expect(jwksUrl).toBe(`https://127.0.0.1:${auth.port}/.well-known/jwks.json`);
    const withVerifier: Record<string, string> = {
      ...env,
      JWKS_URL: jwksUrl,
      JWT_ISSUER: testIssuer,
      JWT_AUDIENCE: testAudience,
      JWKS_STALE_GRACE_SECONDS: '0',
    };
    const shape = configSchemas[name]!.shape;
    const config = Object.fromEntries(Object.keys(jwtVerifierEnv).map((key) => [key, shape[key]!.parse(withVerifier[key])]));
    const options = jwtVerifierOptionsFrom(config as Parameters<typeof jwtVerifierOptionsFrom>[0]);
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], {
      cwd: repoPath('deploy-checks'),
      env: {
        PATH: process.env.PATH,
        TOKEN: auth.token,
        VERIFIER_OPTIONS: JSON.stringify(options),
        NODE_EXTRA_CA_CERTS: env.NODE_EXTRA_CA_CERTS,
      },
    });
    return { result: stdout.trim(), options };
  }

  it.each(verifiers)(
    '%s, configured with its rendered env, fetches the JWKS from auth started with auth’s; without JWKS_TLS_* it cannot',
    async (name) => {
      const env = renderedEnv(name);
      expect(env).toMatchObject({ JWKS_TLS_CERT_FILE: join(dir, 'tls.crt'), JWKS_TLS_KEY_FILE: join(dir, 'tls.key') });
      const before = auth.served;
      const presenting = await verifyAs(name, env);
      expect(presenting.options.jwksTls).toMatchObject({ certFile: join(dir, 'tls.crt'), keyFile: join(dir, 'tls.key') });
      expect(presenting.result).toBe('verified user-1');
      expect(auth.served).toBe(before + 1);

      const { JWKS_TLS_CERT_FILE: _cert, JWKS_TLS_KEY_FILE: _key, ...withoutClientCertificate } = env;
      expect((await verifyAs(name, withoutClientCertificate)).result, 'without JWKS_TLS_*').toBe('refused SERVICE_UNAVAILABLE');
      expect(auth.served, 'the handshake fails before any request').toBe(before + 1);
    },
  );
});

describe('schemes follow what each service serves', () => {
  /** Whether a service's composition root serves TLS: platform's server TLS, or its own cert env. */
  const servesTls = (mainFile: string, certEnv: string) => {
    const main = readRepoFile(mainFile);
    return main.includes('loadServerTlsConfig(') || main.includes(`config.${certEnv}`);
  };
  const mains: Record<string, string> = {
    router: 'router/src/main.ts',
    auth: 'subgraphs/auth/src/main.ts',
    cards: 'subgraphs/cards/src/main.ts',
    charges: 'subgraphs/charges/src/main.ts',
    analytics: 'subgraphs/analytics/src/main.ts',
    bridge: 'openapi-bridge/src/main.ts',
  };

  it.each(Object.keys(mains))('%s: serverTls says whether its code serves TLS', (name) => {
    const files = values.tls.fileEnv[name]!;
    expect(files.serverTls).toBe(servesTls(mains[name]!, files.serverCert ?? files.cert));
  });

  it.each(Object.keys(mains))('%s: every TLS file env the chart sets is one it reads', (name) => {
    const files = values.tls.fileEnv[name]!;
    const readsServerTls = readRepoFile(mains[name]!).includes('loadServerTlsConfig(');
    const known = new Set([
      ...Object.keys(configSchemas[name]!.shape),
      ...(readsServerTls ? Object.keys(serverTlsConfigSchema.shape) : []),
    ]);
    const fields = ['cert', 'key', 'ca', 'clientCa', 'serverCert', 'serverKey', 'jwksCert', 'jwksKey'] as const;
    const written = fields.map((field) => files[field]).filter((n): n is string => Boolean(n));
    expect(written.filter((env) => !known.has(env))).toEqual([]);
    // The template writes each of them (and NODE_EXTRA_CA_CERTS, which Node reads).
    for (const field of fields) expect(tlsTpl).toContain(`- name: {{ .${field} }}`);
  });

  it('addresses every in-cluster URL with the scheme of the service it names', () => {
    const urls = Object.values(values.services).flatMap((svc) =>
      Object.values(svc.env ?? {}).flatMap((value) =>
        String(value)
          .split(',')
          .filter((v) => v.includes('://')),
      ),
    );
    expect(urls.length).toBeGreaterThan(5);
    for (const url of urls) {
      const target = /-([a-z]+)-\{\{ \.color }}:\d+/.exec(url)?.[1];
      expect(url, url).toMatch(new RegExp(`^(?:[a-z]+=)?\\{\\{ \\.schemes\\.${target} }}://`));
    }
  });

  it('probes, scrapes and routes ingress to each service with its own scheme', () => {
    expect(deploymentTpl).toContain('$scheme := include "ghostpay.serviceScheme" (dict "root" $root "name" $name)');
    expect(deploymentTpl).toContain('httpGet: { path: /healthz, port: http, scheme: {{ $scheme | upper }} }');
    const ingress = template('ingress.yaml');
    expect(ingress).toContain('{{- if eq $g.scheme "https" }}');
    expect(ingress).toContain('{{- if ne $router.scheme $bridge.scheme }}');
    const scheme = defineBody(tlsTpl, 'ghostpay.serviceScheme');
    expect(scheme).toContain('if and .root.Values.tls.enabled $files.serverTls -}}https');
  });
});
