/**
 * The deploy workflow's smoke step, run as the runner runs it (bash -eo pipefail) against real
 * servers standing in for the port-forwarded bridge and router. helm, kubectl and k6 do not run
 * here: small stand-ins answer `helm get values` and `kubectl get secret` as a release would,
 * accept `kubectl port-forward`, and record what k6 was asked to do. What k6 would then do
 * (resolve through its `hosts` option, verify against SSL_CERT_FILE) is done with node:https.
 */
import { execFile } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createHttpsServer, request } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { issueTestCertificate, testCertificateAuthority } from '@ghostpay/test-support';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { readRepoFile } from '../src/repo.ts';

interface Step {
  id?: string;
  run?: string;
}
const steps = (parse(readRepoFile('.github/workflows/deploy.yml')) as { jobs: { deploy: { steps: Step[] } } }).jobs.deploy.steps;
const smokeScript = steps.find((s) => s.id === 'smoke')?.run ?? '';

const release = 'ghostpay';
const namespace = 'ghostpay';
const idle = 'green';
const bridgeHost = `${release}-bridge-${idle}.${namespace}.svc`;
const routerHost = `${release}-router-${idle}.${namespace}.svc`;

const work = mkdtempSync(join(tmpdir(), 'ghostpay-deploy-smoke-'));
const bin = join(work, 'bin');

/** A stand-in command: a bash script in `bin`. */
function standIn(name: string, body: string) {
  writeFileSync(join(bin, name), `#!/usr/bin/env bash\nset -euo pipefail\n${body}\n`);
  chmodSync(join(bin, name), 0o755);
}

interface K6Call {
  args: string[];
  sslCertFile: string;
  config: { hosts?: Record<string, string> };
}

/** The bridge's and the router's stand-ins: `/readyz` and every path answer 200; requests are recorded. */
async function startServers(tls: boolean) {
  const requests: string[] = [];
  const handler = (name: string) => (req: { url?: string }, res: { end(body: string): void }) => {
    requests.push(`${name} ${req.url}`);
    res.end('ok');
  };
  const make = (name: string) =>
    tls
      ? createHttpsServer({ cert: readFileSync(join(work, `${name}.pem`)), key: readFileSync(join(work, `${name}.key`)) }, handler(name))
      : createHttpServer(handler(name));
  const servers: Server[] = [make('bridge'), make('router')];
  await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve))));
  const [bridgePort, routerPort] = servers.map((s) => (s.address() as AddressInfo).port) as [number, number];
  return {
    requests,
    bridgePort,
    routerPort,
    close: () => Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve)))),
  };
}

/** Runs the smoke step with the forwarded ports replaced by the servers' and /tmp by a private dir. */
async function runSmokeStep(opts: { tlsEnabled: boolean; bridgePort: number; routerPort: number; dir: string }) {
  const script = smokeScript
    .replaceAll('18080', String(opts.bridgePort))
    .replaceAll('14000', String(opts.routerPort))
    .replaceAll('/tmp/', `${opts.dir}/`);
  const k6Record = join(opts.dir, 'k6-call');
  standIn('helm', `[ "$1 $2 $3" = "get values ${release}" ] && echo '{"tls": {"enabled": ${opts.tlsEnabled}}}'`);
  standIn(
    'kubectl',
    [
      'case "$1" in',
      '  port-forward) exit 0 ;;',
      `  get) [ "$2 $3" = "secret -n" ] && [ "$5" = "${release}-bridge-tls" ] && [ "$7" = 'jsonpath={.data.ca\\.crt}' ] || { echo "unexpected: $*" >&2; exit 3; }`,
      `       base64 -w0 < '${join(work, 'ca.pem')}' ;;`,
      '  *) exit 2 ;;',
      'esac',
    ].join('\n'),
  );
  standIn(
    'k6',
    [
      `printf '%s\\n' "$@" > '${k6Record}.args'`,
      `printf '%s' "\${SSL_CERT_FILE:-}" > '${k6Record}.cert'`,
      'prev=""',
      `for a in "$@"; do [ "$prev" = "--config" ] && cp "$a" '${k6Record}.config'; prev="$a"; done`,
    ].join('\n'),
  );
  await new Promise<void>((resolve, reject) =>
    execFile(
      'bash',
      ['-eo', 'pipefail', '-c', script],
      {
        env: {
          PATH: `${bin}:${process.env.PATH}`,
          HOME: opts.dir,
          RELEASE: release,
          NAMESPACE: namespace,
          IDLE: idle,
          API_KEY: 'gp_test_key',
          USER_ID: 'usr_smoke',
        },
        timeout: 60_000,
      },
      (error, _stdout, stderr) => (error ? reject(new Error(`${error.message}\n${stderr}`)) : resolve()),
    ),
  );
  const read = (suffix: string) => readFileSync(`${k6Record}.${suffix}`, 'utf8');
  return {
    args: read('args').split('\n').slice(0, -1),
    sslCertFile: read('cert'),
    config: JSON.parse(read('config')) as K6Call['config'],
  };
}

/** What k6 does with a URL: resolve its host:port through `hosts`, verify against SSL_CERT_FILE. */
function getAsK6(url: string, call: K6Call): Promise<number> {
  const target = new URL(url);
  const mapped = call.config.hosts?.[target.host];
  expect(mapped, `hosts maps ${target.host}`).toBeTruthy();
  const [address, port] = mapped!.split(':');
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: address,
        port: Number(port),
        path: target.pathname,
        servername: target.hostname,
        ca: readFileSync(call.sslCertFile),
        agent: false,
      },
      (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      },
    );
    req.on('error', reject);
    req.end();
  });
}

const k6Value = (call: K6Call, name: string) =>
  call.args.find((a, i) => call.args[i - 1] === '-e' && a.startsWith(`${name}=`))?.slice(name.length + 1);

beforeAll(() => {
  expect(smokeScript, 'the deploy workflow has a step with id "smoke"').toContain('k6/smoke.js');
  mkdirSync(bin);
  testCertificateAuthority(work, 'ca');
  issueTestCertificate(work, 'bridge', { usage: 'server', dnsNames: [bridgeHost] });
  issueTestCertificate(work, 'router', { usage: 'server', dnsNames: [routerHost] });
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('deploy workflow smoke step', () => {
  it('with tls.enabled: https to the Service names, verified against the CA from the release secret (curl and k6)', async () => {
    const servers = await startServers(true);
    const dir = mkdtempSync(join(work, 'run-'));
    try {
      const call = await runSmokeStep({ tlsEnabled: true, bridgePort: servers.bridgePort, routerPort: servers.routerPort, dir });
      // curl's readiness check reached the bridge over verified TLS.
      expect(servers.requests).toContain('bridge /readyz');
      expect(k6Value(call, 'BASE_URL')).toBe(`https://${bridgeHost}:8080`);
      expect(k6Value(call, 'ROUTER_URL')).toBe(`https://${routerHost}:4000/graphql`);
      expect(call.args).toContain('k6/smoke.js');
      expect(readFileSync(call.sslCertFile, 'utf8')).toBe(readFileSync(join(work, 'ca.pem'), 'utf8'));
      // What k6 would do with those inputs succeeds, verification on.
      expect(await getAsK6(`${k6Value(call, 'BASE_URL')}/readyz`, call)).toBe(200);
      expect(await getAsK6(k6Value(call, 'ROUTER_URL')!, call)).toBe(200);
      expect(servers.requests).toContain('router /graphql');
    } finally {
      await servers.close();
    }
  }, 90_000);

  it('without tls: plain http to the same names, no CA', async () => {
    const servers = await startServers(false);
    const dir = mkdtempSync(join(work, 'run-'));
    try {
      const call = await runSmokeStep({ tlsEnabled: false, bridgePort: servers.bridgePort, routerPort: servers.routerPort, dir });
      expect(servers.requests).toContain('bridge /readyz');
      expect(k6Value(call, 'BASE_URL')).toBe(`http://${bridgeHost}:8080`);
      expect(k6Value(call, 'ROUTER_URL')).toBe(`http://${routerHost}:4000/graphql`);
      expect(call.sslCertFile).toBe('');
      expect(call.config.hosts).toEqual({
        [`${bridgeHost}:8080`]: `127.0.0.1:${servers.bridgePort}`,
        [`${routerHost}:4000`]: `127.0.0.1:${servers.routerPort}`,
      });
    } finally {
      await servers.close();
    }
  }, 90_000);
});
