import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createConnection } from 'node:net';
import { freePort } from './free-port.ts';

export function findRedisServer(): string | undefined {
  try {
    return execFileSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' }).trim() || undefined;
  } catch {
    return undefined;
  }
}

export interface RedisServer {
  readonly url: string;
  readonly port: number;
  /** The server's process id while it runs. */
  readonly pid: number | undefined;
  stop(): Promise<void>;
  start(): Promise<void>;
}

/**
 * Resolves once `child` listens on `port`. Rejects when it exits (or cannot be spawned) first:
 * a port taken since `freePort` makes redis-server exit, and whatever holds the port would
 * otherwise answer the probe in its stead.
 */
function waitForListening(child: ChildProcess, port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    let done = false;
    const finish = (error?: Error) => {
      if (done) return;
      done = true;
      child.off('exit', onExit);
      child.off('error', onError);
      if (error) reject(error);
      else resolve();
    };
    const onExit = (code: number | null, signal: string | null) =>
      finish(new Error(`redis-server exited before it listened on ${port} (${signal ?? `exit code ${code}`})`));
    const onError = (error: Error) => finish(error);
    child.once('exit', onExit);
    child.once('error', onError);
    const retry = () => {
      if (done) return;
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        finish(new Error(`redis-server did not listen on ${port} within ${timeoutMs} ms`));
      } else setTimeout(attempt, 50);
    };
    const attempt = () => {
      if (done) return;
      // Asks the listener for its process id: only `child` itself answers with its own.
      const socket = createConnection({ port, host: '127.0.0.1' });
      let answer = '';
      socket.setEncoding('utf8');
      socket.once('connect', () => socket.write('INFO server\r\n'));
      socket.on('data', (text: string) => {
        answer += text;
        const pid = /process_id:(\d+)\r\n/.exec(answer)?.[1];
        if (pid === undefined) return;
        socket.destroy();
        if (Number(pid) === child.pid) finish();
        else retry();
      });
      // A listener that accepts and never answers is not it either.
      socket.setTimeout(1_000, () => socket.destroy());
      socket.once('error', () => socket.destroy());
      socket.once('close', () => {
        if (!/process_id:\d+\r\n/.test(answer)) retry();
      });
    };
    attempt();
  });
}

/**
 * Starts a throwaway `redis-server` on a free loopback port, without persistence. `start()` after
 * `stop()` starts it again on the same port; on a running server it does nothing. Both reject
 * when redis-server exits (or cannot be run) instead of listening.
 */
export async function startRedisServer(options: { bin?: string } = {}): Promise<RedisServer> {
  const bin = options.bin ?? findRedisServer();
  if (!bin) throw new Error('redis-server not found on PATH (apt-get install -y redis-server)');
  const port = await freePort();
  let child: ChildProcess | undefined;
  const running = (process: ChildProcess | undefined): process is ChildProcess =>
    // No pid: it could not be spawned (then no 'exit' comes either).
    process?.pid !== undefined && process.exitCode === null && process.signalCode === null;
  const start = async () => {
    // Already running: a second server could not bind the port, and tracking it instead would
    // leave this one running after stop().
    if (running(child)) return;
    const spawned = spawn(
      bin,
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'yes'],
      {
        stdio: 'ignore',
      },
    );
    child = spawned;
    await waitForListening(spawned, port, 10_000);
  };
  await start();
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    get pid() {
      // Gone either way: exited, or killed by a signal (then exitCode stays null and signalCode is set).
      return running(child) ? child.pid : undefined;
    },
    start,
    async stop() {
      const current = child;
      child = undefined;
      // Already gone (an exit, or a signal someone else sent): its 'exit' event has fired and will not again.
      if (!running(current)) return;
      await new Promise<void>((resolve) => {
        current.once('exit', () => resolve());
        current.kill('SIGKILL');
      });
    },
  };
}
