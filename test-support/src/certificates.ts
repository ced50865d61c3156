import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Throwaway certificates for TLS and mTLS tests, made per run with `openssl` in `dir` (never
 * committed). Each name gives `<dir>/<name>.pem` and `<dir>/<name>.key`.
 */
function openssl(...args: string[]): void {
  execFileSync('openssl', args, { stdio: 'pipe', timeout: 20_000 });
}

/** A self-signed EC certificate for 127.0.0.1: `<name>.pem`, `<name>.key`. */
export function selfSignedCertificate(dir: string, name = 'cert'): { certFile: string; keyFile: string } {
  const certFile = join(dir, `${name}.pem`);
  const keyFile = join(dir, `${name}.key`);
  openssl(
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:prime256v1',
    '-nodes',
    '-days',
    '1',
    '-subj',
    '/CN=127.0.0.1',
    '-addext',
    'subjectAltName=IP:127.0.0.1',
    '-keyout',
    keyFile,
    '-out',
    certFile,
  );
  return { certFile, keyFile };
}

/** A certificate authority: `<name>.pem` (its certificate) and `<name>.key`. */
export function testCertificateAuthority(dir: string, name = 'ca'): void {
  openssl(
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-days',
    '1',
    '-subj',
    `/CN=ghostpay test ${name}`,
    '-keyout',
    join(dir, `${name}.key`),
    '-out',
    join(dir, `${name}.pem`),
  );
}

/**
 * A certificate `<name>.pem` / `<name>.key` issued by the authority `ca` (made first with
 * `testCertificateAuthority`): a server certificate for 127.0.0.1 (and `dnsNames`), a client
 * certificate, or `both`, as cert-manager issues the chart's pod certificates (usages server auth
 * and client auth).
 */
export function issueTestCertificate(
  dir: string,
  name: string,
  options: { usage: 'server' | 'client' | 'both'; ca?: string; dnsNames?: readonly string[] },
): void {
  const ca = options.ca ?? 'ca';
  const file = (suffix: string) => join(dir, `${name}.${suffix}`);
  const subjectAltName = ['IP:127.0.0.1', ...(options.dnsNames ?? []).map((dns) => `DNS:${dns}`)].join(',');
  const extendedKeyUsage = { server: 'serverAuth', client: 'clientAuth', both: 'serverAuth,clientAuth' }[options.usage];
  writeFileSync(
    file('ext'),
    options.usage === 'client'
      ? `extendedKeyUsage=${extendedKeyUsage}\n`
      : `subjectAltName=${subjectAltName}\nextendedKeyUsage=${extendedKeyUsage}\n`,
  );
  openssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${name}`, '-keyout', file('key'), '-out', file('csr'));
  openssl(
    'x509',
    '-req',
    '-in',
    file('csr'),
    '-CA',
    join(dir, `${ca}.pem`),
    '-CAkey',
    join(dir, `${ca}.key`),
    '-CAcreateserial',
    '-days',
    '1',
    '-extfile',
    file('ext'),
    '-out',
    file('pem'),
  );
}
