import { existsSync, readFileSync, writeFileSync } from 'node:fs';

export interface DevCredential {
  userId: string;
  apiKey: string;
}

/** The shape of `.data/dev-credentials.json`. */
export interface DevCredentials {
  /**
   * The database the keys are valid in (`describeDatabase`: the PostgreSQL URL without its
   * password, or `pglite:<dir>`). Informative: every start checks the keys against the database
   * it opened and issues fresh ones when they are not valid there.
   */
  database?: string;
  admin: DevCredential;
  merchant: DevCredential;
  user: DevCredential;
}

export function readDevCredentials(path: string): DevCredentials | undefined {
  if (!existsSync(path)) return undefined;
  return JSON.parse(readFileSync(path, 'utf8')) as DevCredentials;
}

export function writeDevCredentials(path: string, credentials: DevCredentials): void {
  writeFileSync(path, `${JSON.stringify(credentials, null, 2)}\n`, { mode: 0o600 });
}
