import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';

/** What the other process takes and holds. */
export type HeldLock =
  /** platform's `acquireProcessLock(path)`: the lock alone (the stack's data directory, any `.lock`). */
  | { kind: 'process-lock'; path: string }
  /**
   * db's embedded database (PGlite) open on `dataDir` (which locks `<dataDir>.lock`), after
   * running `statements` on it: data another process wrote, for a takeover to find.
   */
  | { kind: 'embedded-database'; dataDir: string; statements?: string[] }
  /**
   * An ES module body (top-level `await` allowed) that takes the lock, for a lock test-support
   * does not know (a subgraph's store): import by absolute path (`JSON.stringify(fileURLToPath(...))`).
   */
  | { kind: 'script'; script: string };

/** Another process holding a lock, until `kill()`. */
export interface LockHolder extends AsyncDisposable {
  pid: number;
  /** Kills it with SIGKILL (a crash: its lock is left behind, stale) and waits for its exit. Idempotent. */
  kill(): Promise<void>;
}

export interface LockHolderOptions {
  /** How long it may take to hold the lock before the spawn fails. @default 20_000 */
  timeoutMs?: number;
}

const moduleUrl = (specifier: string) => JSON.stringify(pathToFileURL(createRequire(import.meta.url).resolve(specifier)).href);

function takingScript(lock: HeldLock): string {
  switch (lock.kind) {
    case 'process-lock':
      return `const { acquireProcessLock } = await import(${moduleUrl('@ghostpay/platform/process-lock')});
        acquireProcessLock(${JSON.stringify(lock.path)});`;
    case 'embedded-database':
      return `const { createDatabase } = await import(${moduleUrl('@ghostpay/db')});
        const handle = await createDatabase({ dataDir: ${JSON.stringify(lock.dataDir)} });
        for (const statement of ${JSON.stringify(lock.statements ?? [])}) await handle.pglite.query(statement);`;
    case 'script':
      return lock.script;
  }
}

const held = 'held';

/**
 * Starts another process that takes `lock` and holds it: resolves once it holds it, rejects with
 * the process's stderr when it exits (or `timeoutMs` passes) before. For tests of "held by
 * another process" and of the takeover once that process is gone (`kill()`, a crash). The process
 * also exits when this one does (its stdin closes), so a failed run leaves none behind.
 */
export async function spawnLockHolder(lock: HeldLock, { timeoutMs = 20_000 }: LockHolderOptions = {}): Promise<LockHolder> {
  const script = `${takingScript(lock)}
    process.stdout.write(${JSON.stringify(`${held}\n`)});
    process.stdin.on('end', () => process.exit(0));
    process.stdin.resume();`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['pipe', 'pipe', 'pipe'] });
  const exited = once(child, 'exit').then(() => undefined);
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    if (stderr.length < 20_000) stderr += chunk;
  });
  const kill = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  };
  try {
    await untilHeld(child, exited, timeoutMs, () => stderr);
  } catch (error) {
    await kill();
    throw error;
  }
  return { pid: child.pid!, kill, [Symbol.asyncDispose]: kill };
}

async function untilHeld(child: ChildProcess, exited: Promise<void>, timeoutMs: number, stderr: () => string): Promise<void> {
  let stdout = '';
  let timer: NodeJS.Timeout | undefined;
  const said = new Promise<void>((resolve) => {
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
      if (stdout.split('\n').includes(held)) resolve();
    });
  });
  const failed = (why: string) => new Error(`the lock holder ${why} (stdout: ${JSON.stringify(stdout)}); stderr:\n${stderr()}`);
  try {
    await Promise.race([
      said,
      // After its exit, what it wrote to stderr has arrived too ('exit' may come first: wait for 'close').
      exited.then(async () => {
        if (!child.stderr!.closed) await once(child.stderr!, 'close').catch(() => undefined);
        throw failed(`exited (${child.exitCode ?? child.signalCode}) before it held the lock`);
      }),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(failed(`did not hold the lock within ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** The pid of a process that has exited: what a stale lock names. */
export async function exitedPid(): Promise<number> {
  const gone = spawn(process.execPath, ['-e', '0'], { stdio: 'ignore' });
  await once(gone, 'exit');
  return gone.pid!;
}
