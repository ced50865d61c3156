import type { Logger } from './logger.ts';

export interface PeriodicJob {
  /** The job's name, as its log lines say (`job`). */
  readonly name: string;
  start(): void;
  /**
   * Stops scheduling and waits for a run in progress to finish, however long it takes; a caller
   * that must not wait forever (a service's shutdown) bounds the wait itself (`stopPeriodicJobs`).
   */
  stop(): Promise<void>;
  /** Runs once now (awaiting any run in progress first); returns the run's result. */
  runOnce(): Promise<number>;
  readonly running: boolean;
}

/**
 * Runs `run` every `intervalMs` after the previous run finished (never overlapping),
 * logging failures and carrying on. Timers are unref'd so a job never keeps a process alive.
 * `stop()` then `start()` while a run is in progress leaves one schedule: the stopped loop ends
 * when its run does (before, it scheduled again beside the new one).
 */
export function createPeriodicJob(options: { name: string; intervalMs: number; run: () => Promise<number>; logger: Logger }): PeriodicJob {
  let timer: NodeJS.Timeout | undefined;
  let started = false;
  // Each start begins a new schedule loop; a loop whose number is no longer this one stops.
  let loop = 0;
  let current: Promise<number> | undefined;

  const execute = (): Promise<number> => {
    const previous = current ?? Promise.resolve(0);
    const next = previous
      .catch(() => 0)
      .then(() => options.run())
      .finally(() => {
        if (current === next) current = undefined;
      });
    current = next;
    return next;
  };
  const schedule = (id: number) => {
    if (!started || id !== loop) return;
    timer = setTimeout(() => {
      timer = undefined;
      execute()
        .catch((error: unknown) => options.logger.error({ err: error, job: options.name }, 'periodic job failed'))
        .finally(() => schedule(id));
    }, options.intervalMs);
    timer.unref();
  };

  return {
    name: options.name,
    get running() {
      return started;
    },
    start() {
      if (started) return;
      started = true;
      schedule(++loop);
    },
    async stop() {
      started = false;
      loop++;
      if (timer) clearTimeout(timer);
      timer = undefined;
      await current?.catch(() => 0);
    },
    runOnce: execute,
  };
}

/**
 * Stops `jobs` (no run starts after this call) and waits for their runs in progress, at most
 * `timeoutMs`: a run that hangs (a stuck query) must not hold a shutdown forever. A run still in
 * progress then is abandoned, with one `warn` naming its job; it goes on until it ends or fails
 * (its pool closed under it). Resolves with the names of the jobs abandoned.
 */
export async function stopPeriodicJobs(jobs: readonly PeriodicJob[], timeoutMs: number, logger: Logger): Promise<string[]> {
  const pending = new Set(jobs);
  const stopped = Promise.all(jobs.map((job) => job.stop().finally(() => pending.delete(job))));
  let timer: NodeJS.Timeout | undefined;
  const timedOut = await Promise.race([
    stopped.then(() => false),
    new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(true), timeoutMs);
      timer.unref();
    }),
  ]);
  clearTimeout(timer);
  if (!timedOut) return [];
  const abandoned = [...pending].map((job) => job.name);
  logger.warn({ jobs: abandoned, timeoutMs }, 'shutdown bound reached; abandoning periodic job runs still in progress');
  return abandoned;
}
