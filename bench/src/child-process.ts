import { type ChildProcess, fork } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { join, resolve } from 'node:path';
import { ioSyscalls } from './server-cpu.ts';

/** Messages a benchmark child process sends to the parent. */
export type ChildMessage =
  | { type: 'ready'; urls: Record<string, string>; info?: Record<string, unknown> }
  | { type: 'stats'; cpuMicros: number; maxRssKb: number; syscalls: number }
  | { type: 'result'; result: unknown }
  | { type: 'error'; message: string };

/** Messages the parent sends to a child. */
export type ParentMessage = { type: 'mark' } | { type: 'stats' } | { type: 'stop' } | { type: 'run'; options: unknown };

export interface BenchChild {
  readonly name: string;
  readonly pid: number;
  readonly urls: Record<string, string>;
  readonly info: Record<string, unknown>;
  /** Starts the CPU window (process.cpuUsage baseline in the child). */
  mark(): Promise<void>;
  /** CPU microseconds and read/write-family syscalls since `mark()`, and peak RSS (KiB) of the child. */
  stats(): Promise<{ cpuMicros: number; maxRssKb: number; syscalls: number }>;
  /** Asks the child to do its one job (e.g. the database-limit loop) and returns its result. */
  run<T>(options: unknown): Promise<T>;
  stop(): Promise<void>;
}

const profileDir = resolve(import.meta.dirname, '../profiles');

/**
 * Forks `script` (a .ts module run by Node 24 directly) and waits for its `ready` message.
 * With BENCH_CPU_PROF=1 each child profiles its measured window (mark → stats) and writes
 * `bench/profiles/<name>.cpuprofile`: steady state only, no start-up or warm-up.
 */
export async function startChild(
  name: string,
  script: string,
  env: Record<string, string>,
  options: { timeoutMs?: number; execArgv?: string[] } = {},
): Promise<BenchChild> {
  const timeoutMs = options.timeoutMs ?? 60_000;
  const child: ChildProcess = fork(script, [], {
    env: { ...process.env, ...env, BENCH_CHILD_NAME: name, BENCH_PROFILE_DIR: profileDir },
    execArgv: options.execArgv ?? [],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const waiters: Array<(message: ChildMessage) => boolean> = [];
  let exited = false;
  child.on('message', (message: ChildMessage) => {
    const index = waiters.findIndex((w) => w(message));
    if (index >= 0) waiters.splice(index, 1);
  });
  const exitPromise = new Promise<void>((done) =>
    child.once('exit', () => {
      exited = true;
      done();
    }),
  );
  const next = <T extends ChildMessage['type']>(type: T, ms: number): Promise<Extract<ChildMessage, { type: T }>> =>
    new Promise((resolvePromise, reject) => {
      const timer = setTimeout(() => reject(new Error(`${name}: no "${type}" message within ${ms} ms`)), ms);
      exitPromise.then(() => reject(new Error(`${name} exited`)));
      waiters.push((message) => {
        if (message.type === 'error') {
          clearTimeout(timer);
          reject(new Error(`${name}: ${message.message}`));
          return true;
        }
        if (message.type !== type) return false;
        clearTimeout(timer);
        resolvePromise(message as Extract<ChildMessage, { type: T }>);
        return true;
      });
    });
  // A child that has exited (stopped by a teardown) answers nothing: the waiter's exit check
  // rejects. With a callback a send to it is not an 'error' event that ends the bench.
  const send = (message: ParentMessage) => {
    if (child.connected) child.send(message, () => {});
  };
  let ready: Extract<ChildMessage, { type: 'ready' }>;
  try {
    ready = await next('ready', timeoutMs);
  } catch (error) {
    child.kill('SIGKILL');
    throw error;
  }
  return {
    name,
    pid: child.pid as number,
    urls: ready.urls,
    info: ready.info ?? {},
    async mark() {
      const reply = next('stats', 10_000);
      send({ type: 'mark' });
      await reply;
    },
    async stats() {
      const reply = next('stats', 10_000);
      send({ type: 'stats' });
      const { cpuMicros, maxRssKb, syscalls } = await reply;
      return { cpuMicros, maxRssKb, syscalls };
    },
    async run<T>(options: unknown) {
      const reply = next('result', 600_000);
      send({ type: 'run', options });
      return (await reply).result as T;
    },
    async stop() {
      if (exited) return;
      send({ type: 'stop' });
      const killer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await exitPromise;
      clearTimeout(killer);
    },
  };
}

/**
 * The child side: answers mark/stats, runs `onRun` for `run`, and calls `onStop` then exits on
 * `stop` (a normal exit, so --cpu-prof profiles are written).
 */
export function serveChild(handlers: { onStop: () => Promise<void>; onRun?: (options: unknown) => Promise<unknown> }) {
  let baseline = process.cpuUsage();
  let syscallBaseline = ioSyscalls(process.pid);
  // With a callback a failed send (the parent already gone) is not an 'error' event that
  // kills the child with a stack trace: 'disconnect' below ends it instead.
  const reply = (message: ChildMessage) => process.send?.(message, undefined, undefined, () => {});
  const stats = () => {
    const used = process.cpuUsage(baseline);
    reply({
      type: 'stats',
      cpuMicros: used.user + used.system,
      maxRssKb: process.resourceUsage().maxRSS,
      syscalls: ioSyscalls(process.pid) - syscallBaseline,
    });
  };
  let profiler: Session | undefined;
  let heapProfiler: Session | undefined;
  const heapMode = process.env.BENCH_HEAP_PROF;
  /** Profiles written so far, by file extension: the first is `<name>.<ext>`, later ones `<name>-<n>.<ext>`. */
  const written = new Map<string, number>();
  const writeProfile = (extension: string, profile: unknown) => {
    const n = written.get(extension) ?? 0;
    written.set(extension, n + 1);
    const dir = process.env.BENCH_PROFILE_DIR as string;
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, `${process.env.BENCH_CHILD_NAME}${n ? `-${n}` : ''}.${extension}`), JSON.stringify(profile));
  };
  process.on('message', async (message: ParentMessage) => {
    if (message.type === 'mark') {
      if (process.env.BENCH_CPU_PROF === '1' && !profiler) {
        profiler = new Session();
        profiler.connect();
        await profiler.post('Profiler.enable');
        await profiler.post('Profiler.start');
      }
      if ((heapMode === 'alloc' || heapMode === 'live' || heapMode === 'survivors') && !heapProfiler) {
        heapProfiler = new Session();
        heapProfiler.connect();
        // alloc: every allocation sampled in the window, collected or not; live: only what is still
        // reachable at its end; survivors: what outlived a scavenge (promoted or still live), the
        // objects that make scavenges slow and fill the old generation.
        await heapProfiler.post('HeapProfiler.startSampling', {
          samplingInterval: 16_384,
          includeObjectsCollectedByMajorGC: heapMode !== 'live',
          includeObjectsCollectedByMinorGC: heapMode === 'alloc',
        });
      }
      baseline = process.cpuUsage();
      syscallBaseline = ioSyscalls(process.pid);
      stats();
    } else if (message.type === 'stats') {
      stats();
      if (profiler) {
        const { profile } = await profiler.post('Profiler.stop');
        writeProfile('cpuprofile', profile);
        profiler.disconnect();
        profiler = undefined;
      }
      if (heapProfiler) {
        const { profile } = await heapProfiler.post('HeapProfiler.stopSampling');
        writeProfile(`${heapMode}.heapprofile`, profile);
        heapProfiler.disconnect();
        heapProfiler = undefined;
      }
    } else if (message.type === 'run') {
      try {
        reply({ type: 'result', result: await handlers.onRun?.(message.options) });
      } catch (error) {
        reply({ type: 'error', message: (error as Error).stack ?? String(error) });
      }
    } else if (message.type === 'stop') {
      await handlers.onStop().catch(() => {});
      process.exit(0);
    }
  });
  // The parent going away (Ctrl-C, crash) must never leave a server behind.
  process.on('disconnect', () => process.exit(0));
  return {
    ready(urls: Record<string, string>, info?: Record<string, unknown>) {
      reply({ type: 'ready', urls, info });
    },
    fail(error: unknown) {
      reply({ type: 'error', message: (error as Error).stack ?? String(error) });
      process.exit(1);
    },
  };
}
