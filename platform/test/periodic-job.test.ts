import { afterEach, describe, expect, it, vi } from 'vitest';
import { createLogger, createPeriodicJob } from '../src/index.ts';

afterEach(() => {
  vi.useRealTimers();
});

/** A job every second whose runs wait for `finishRun()`; `runs()` counts the runs started. */
function heldSweep() {
  let finish: () => void = () => {};
  let started = 0;
  const job = createPeriodicJob({
    name: 'sweep',
    intervalMs: 1_000,
    logger: createLogger({ service: 'test', level: 'silent' }),
    run: () => {
      started++;
      return new Promise<number>((resolve) => {
        finish = () => resolve(1);
      });
    },
  });
  return { job, runs: () => started, finishRun: () => finish() };
}

describe('periodic job', () => {
  it('keeps one schedule when stopped and started again while a run is in progress', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const { job, runs, finishRun } = heldSweep();
    job.start();
    expect(vi.getTimerCount()).toBe(1);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(runs()).toBe(1);
    expect(vi.getTimerCount()).toBe(0);

    const stopped = job.stop();
    job.start();
    finishRun();
    await stopped;
    await vi.advanceTimersByTimeAsync(0);
    // The new start's timer only: the stopped loop ended with its run.
    expect(vi.getTimerCount()).toBe(1);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(runs()).toBe(2);
    finishRun();
    await vi.advanceTimersByTimeAsync(0);
    expect(vi.getTimerCount()).toBe(1);
    await job.stop();
    expect(vi.getTimerCount()).toBe(0);
  });

  it('runs no more once stopped, whatever was in progress', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const { job, runs, finishRun } = heldSweep();
    job.start();
    await vi.advanceTimersByTimeAsync(1_000);
    const stopped = job.stop();
    finishRun();
    await stopped;
    await vi.advanceTimersByTimeAsync(10_000);
    expect(runs()).toBe(1);
    expect(vi.getTimerCount()).toBe(0);
  });
});
