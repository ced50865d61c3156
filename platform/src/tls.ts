import { readFileSync, unwatchFile, watchFile } from 'node:fs';
import type { Server as HttpsServer, ServerOptions as HttpsServerOptions } from 'node:https';
import { env, loadConfig, z } from './config.ts';

/**
 * Server-side TLS of a service, from env. With `TLS_CLIENT_CA_FILE` set the service demands a
 * client certificate signed by that CA (mTLS): how subgraphs accept only the router.
 */
export const serverTlsConfigSchema = z.object({
  /** PEM certificate (chain) the service presents. Unset → plain HTTP. */
  TLS_CERT_FILE: env.filePath().optional(),
  /** PEM private key of that certificate: a path, shown in problems and config dumps (the key is the file's content). */
  TLS_KEY_FILE: env.filePath().optional(),
  /** PEM CA bundle client certificates must chain to; set → client certificates required. */
  TLS_CLIENT_CA_FILE: env.filePath().optional(),
  /** How often the files are checked for a renewed certificate (cert-manager, Vault). @default 10000 */
  TLS_RELOAD_INTERVAL_MS: env.milliseconds(10_000),
});
export type ServerTlsConfig = z.infer<typeof serverTlsConfigSchema>;

/** Files a TLS client (the router towards subgraphs) presents and trusts. */
export interface ClientTlsFiles {
  /** PEM CA bundle the server certificate must chain to. */
  caFile?: string;
  /** PEM client certificate and key, for mTLS. */
  certFile?: string;
  keyFile?: string;
}

/** What undici's `connect` and `ws` take: PEM buffers. */
export interface ClientTlsOptions {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
}

/** Problems with a TLS env combination, one line each (empty when consistent). */
export function serverTlsProblems(config: ServerTlsConfig): string[] {
  const problems: string[] = [];
  if (Boolean(config.TLS_CERT_FILE) !== Boolean(config.TLS_KEY_FILE)) problems.push('TLS_CERT_FILE and TLS_KEY_FILE: set both or neither');
  if (config.TLS_CLIENT_CA_FILE && !config.TLS_CERT_FILE)
    problems.push('TLS_CLIENT_CA_FILE: client certificates need TLS (set TLS_CERT_FILE and TLS_KEY_FILE)');
  return problems;
}

/** HTTPS server options from the files, or undefined for plain HTTP. */
export function serverTlsOptions(config: ServerTlsConfig): HttpsServerOptions | undefined {
  if (!config.TLS_CERT_FILE || !config.TLS_KEY_FILE) return undefined;
  const options: HttpsServerOptions = {
    cert: readFileSync(config.TLS_CERT_FILE),
    key: readFileSync(config.TLS_KEY_FILE),
    minVersion: 'TLSv1.2',
  };
  if (config.TLS_CLIENT_CA_FILE) {
    options.ca = readFileSync(config.TLS_CLIENT_CA_FILE);
    options.requestCert = true;
    options.rejectUnauthorized = true;
  }
  return options;
}

/**
 * Re-reads the certificate files when they change and swaps them into the running server
 * (`setSecureContext`), so a renewed certificate is served without a restart. Returns a stop
 * function. A half-written renewal that fails to load keeps the previous context.
 */
export function reloadServerTlsOnChange(server: HttpsServer, config: ServerTlsConfig, onError?: (error: unknown) => void): () => void {
  const files = [config.TLS_CERT_FILE, config.TLS_KEY_FILE, config.TLS_CLIENT_CA_FILE].filter((f): f is string => Boolean(f));
  const reload = () => {
    try {
      const options = serverTlsOptions(config);
      if (options) server.setSecureContext(options);
    } catch (error) {
      onError?.(error);
    }
  };
  for (const file of files) watchFile(file, { interval: config.TLS_RELOAD_INTERVAL_MS, persistent: false }, reload);
  return () => {
    for (const file of files) unwatchFile(file, reload);
  };
}

/** Client TLS options from files, or undefined when none is set. */
export function clientTlsOptions(files: ClientTlsFiles): ClientTlsOptions | undefined {
  if (!files.caFile && !files.certFile && !files.keyFile) return undefined;
  if (Boolean(files.certFile) !== Boolean(files.keyFile))
    throw new Error('client TLS: set both the certificate and the key file, or neither');
  return {
    ...(files.caFile ? { ca: readFileSync(files.caFile) } : {}),
    ...(files.certFile ? { cert: readFileSync(files.certFile) } : {}),
    ...(files.keyFile ? { key: readFileSync(files.keyFile) } : {}),
  };
}

/** Reads the server TLS env of a service or stops the process with one line per problem. */
export function loadServerTlsConfig(service: string, environment: Record<string, string | undefined> = process.env): ServerTlsConfig {
  const config = loadConfig(service, serverTlsConfigSchema, environment);
  const problems = serverTlsProblems(config);
  if (problems.length === 0) return config;
  process.stderr.write(`${service}: invalid configuration\n`);
  for (const line of problems) process.stderr.write(`  ${line}\n`);
  process.exit(1);
}
