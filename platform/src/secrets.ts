import { type FSWatcher, readdirSync, readFileSync, statSync, watch } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from './logger.ts';

export interface SecretsProviderOptions {
  /**
   * A directory with one file per secret, named after it (`pan-encryption-keys`,
   * `signing-kek`, ...): how Vault Agent, the Secrets Store CSI driver and Kubernetes
   * secret volumes deliver them. Watched and re-read on change.
   */
  dir?: string;
  /** Development fallback: `GHOSTPAY_SECRET_<NAME>` (name upper-cased, `-` → `_`). */
  env?: Record<string, string | undefined>;
  /**
   * Production: a secret answered from the env fallback is still answered, but `logger` is told
   * once per secret (its name and env variable, never its value) that env secrets are for
   * development: anything that can read the process's environment (a crash dump, `/proc`, a
   * child process, an orchestrator's describe) reads them. @default NODE_ENV === 'production'
   */
  production?: boolean;
  /** Poll interval as a backstop to fs.watch (missed events on some volume types). @default 5000 */
  pollIntervalMs?: number;
  /**
   * Told once when the directory cannot be re-read (the last values stay in use) and once
   * when it can be again; never told a value.
   */
  logger?: Pick<Logger, 'warn' | 'info'>;
}

export interface SecretsProvider {
  /** The current value, or undefined. */
  get(name: string): string | undefined;
  /** The current value; throws a readable error naming the file and env var when missing. */
  require(name: string): string;
  /** Calls `listener` with the new value whenever the secret changes. Returns an unsubscribe. */
  onChange(name: string, listener: (value: string | undefined) => void): () => void;
  close(): void;
}

export function envNameForSecret(name: string): string {
  return `GHOSTPAY_SECRET_${name.toUpperCase().replace(/[^A-Z0-9]/g, '_')}`;
}

export function createSecretsProvider(options: SecretsProviderOptions = {}): SecretsProvider {
  const { dir, env = process.env, pollIntervalMs = 5_000, logger } = options;
  const production = options.production ?? env.NODE_ENV === 'production';
  const warnedFromEnv = new Set<string>();
  let values = new Map<string, string>();
  const listeners = new Map<string, Set<(value: string | undefined) => void>>();

  const readDir = () => {
    const next = new Map<string, string>();
    if (dir) {
      for (const entry of readdirSync(dir)) {
        // Kubernetes projects secrets through `..data` symlinks; skip the dot entries.
        if (entry.startsWith('.')) continue;
        const path = join(dir, entry);
        try {
          const stat = statSync(path);
          if (!stat.isFile()) continue;
          next.set(entry, readFileSync(path, 'utf8').trim());
          warnIfOthersMayRead(entry, stat.mode);
        } catch {
          // A file removed between readdir and read: treat as absent.
        }
      }
    }
    return next;
  };
  const apply = (next: Map<string, string>) => {
    const previous = values;
    values = next;
    for (const [name, set] of listeners) {
      const before = previous.get(name);
      const after = next.get(name);
      if (before !== after) for (const listener of set) listener(after ?? fromEnv(name));
    }
  };
  const fromEnv = (name: string) => {
    const value = env[envNameForSecret(name)];
    if (value !== undefined && production && !warnedFromEnv.has(name)) {
      warnedFromEnv.add(name);
      logger?.warn(
        { secretName: name, env: envNameForSecret(name) },
        'secret read from the environment in production: env secrets are for development; deliver it as a file in SECRETS_DIR',
      );
    }
    return value;
  };

  // A secret file any user of the host or container may read (or write): a Kubernetes secret
  // volume's defaultMode 0644, a bind mount from a developer's home. Still served, since refusing
  // would stop the service over a deployment setting, but the operator is told once per file and
  // mode (its name and mode, never its value). The chart mounts secrets 0440.
  const warnedMode = new Map<string, number>();
  const warnIfOthersMayRead = (name: string, mode: number) => {
    const permissions = mode & 0o777;
    if ((permissions & 0o007) === 0 || warnedMode.get(name) === permissions) return;
    warnedMode.set(name, permissions);
    logger?.warn(
      { secretName: name, dir, mode: permissions.toString(8).padStart(4, '0') },
      'secret file is accessible to other users; make it readable by the service only (0400 or 0440)',
    );
  };

  // A re-read while running must not throw from a timer or a watch event: that would be an
  // uncaught exception ending the process. A directory that cannot be read for a moment
  // (removed, remounted) keeps the values last read; the next event or poll tries again.
  let unreadable = false;
  const reread = () => {
    let next: Map<string, string>;
    try {
      next = readDir();
    } catch (error) {
      if (!unreadable) logger?.warn({ err: error, dir }, 'secrets directory cannot be read; keeping the last values');
      unreadable = true;
      return;
    }
    if (unreadable) logger?.info({ dir }, 'secrets directory readable again');
    unreadable = false;
    apply(next);
  };
  let watcher: FSWatcher | undefined;
  let poller: NodeJS.Timeout | undefined;
  if (dir) {
    // The first read throws: a directory that is not there at start is a configuration error.
    values = readDir();
    try {
      watcher = watch(dir, { persistent: false }, reread);
      watcher.on('error', () => {
        // The watched directory went away; the poller still picks changes up.
      });
    } catch {
      // fs.watch unsupported here; the poller still picks changes up.
    }
    poller = setInterval(reread, pollIntervalMs);
    poller.unref();
  }

  const get = (name: string) => values.get(name) ?? fromEnv(name);
  return {
    get,
    require(name) {
      const value = get(name);
      if (value === undefined || value === '') {
        const where = dir
          ? `file ${join(dir, name)} or env ${envNameForSecret(name)}`
          : `env ${envNameForSecret(name)} (or set SECRETS_DIR)`;
        throw new Error(`secret "${name}" is not available: provide ${where}`);
      }
      return value;
    },
    onChange(name, listener) {
      const set = listeners.get(name) ?? new Set();
      listeners.set(name, set);
      set.add(listener);
      return () => set.delete(listener);
    },
    close() {
      watcher?.close();
      if (poller) clearInterval(poller);
    },
  };
}
