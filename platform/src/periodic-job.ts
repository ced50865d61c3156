import type { Logger } from './logger.ts';

export interface PeriodicJob {
  start(): void;
  /** Stops scheduling and waits for a run in progress to finish. */
  stop(): Promise<void>;
  /** Runs once now (awaiting any run in progress first); returns the run's result. */
  runOnce(): Promise<number>;
  readonly running: boolean;
}

/**
 * Runs `run` every `intervalMs` after the previous run finished (never overlapping),
 * logging failures and carrying on. Timers are unref'd so a job never keeps a process alive.
 */
export function createPeriodicJob(options: { name: string; intervalMs: number; run: () => Promise<number>; logger: Logger }): PeriodicJob {
  let timer: NodeJS.Timeout | undefined;
  let started = false;
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
  const schedule = () => {
    if (!started) return;
    timer = setTimeout(() => {
      timer = undefined;
      execute()
        .catch((error: unknown) => options.logger.error({ err: error, job: options.name }, 'periodic job failed'))
        .finally(schedule);
    }, options.intervalMs);
    timer.unref();
  };

  return {
    get running() {
      return started;
    },
    start() {
      if (started) return;
      started = true;
      schedule();
    },
    async stop() {
      started = false;
      if (timer) clearTimeout(timer);
      timer = undefined;
      await current?.catch(() => 0);
    },
    runOnce: execute,
  };
}
