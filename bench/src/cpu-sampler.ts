import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { processTable, ticksToMicros, treeTicks } from './server-cpu.ts';

/** The first line of /proc/stat in ticks: all CPUs' busy time (not idle, not iowait) and steal. */
function machineTicks(): { busy: number; steal: number } {
  const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0]?.trim().split(/\s+/).slice(1).map(Number) ?? [];
  // user nice system idle iowait irq softirq steal: idle and iowait are not busy.
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = fields;
  return { busy: user + nice + system + irq + softirq + steal, steal };
}

/**
 * The share of the machine's CPU time the hypervisor gave to other guests over a window (steal,
 * from /proc/stat): a run with steal was measured on a machine that was not all its own.
 */
export function stealMeter(): { percent(): number } {
  const start = machineTicks().steal;
  const started = performance.now();
  const cores = cpus().length;
  return {
    percent() {
      const ms = performance.now() - started;
      return ms > 0 ? (100 * (ticksToMicros(machineTicks().steal - start) / 1000)) / (ms * cores) : 0;
    },
  };
}

export interface CpuSecond {
  /** CPU ms of each named process tree in this second. */
  byProcess: Record<string, number>;
  /** CPU ms the whole machine was busy in this second (every process, ours or not; all cores). */
  machineBusyMs: number;
  /** CPU ms the hypervisor gave to other guests while this one wanted to run. */
  stealMs: number;
}

/**
 * Samples, every second, the CPU of the given process trees and of the whole machine: run next
 * to an open-loop window, it says whether a slow second was one of our processes (which), the
 * machine busy with something else, or the hypervisor (steal).
 */
export function startCpuSampler(processes: { name: string; pid: number }[], options: { self?: string; intervalMs?: number } = {}) {
  // One pass over /proc per sample for every tree: the sampler runs in the load generator's
  // process during the measured window, so it must cost next to nothing.
  const ticksNow = () => {
    const table = processTable();
    return processes.map(({ pid }) => treeTicks(table, pid));
  };
  let lastTicks = ticksNow();
  // This process by process.cpuUsage: through /proc its tree would include every child it forked.
  let selfStart = process.cpuUsage();
  let last = machineTicks();
  const seconds: CpuSecond[] = [];
  const timer = setInterval(() => {
    const ticks = ticksNow();
    const byProcess: Record<string, number> = {};
    processes.forEach(({ name }, i) => {
      byProcess[name] = ticksToMicros((ticks[i] ?? 0) - (lastTicks[i] ?? 0)) / 1000;
    });
    lastTicks = ticks;
    if (options.self) {
      const used = process.cpuUsage(selfStart);
      byProcess[options.self] = (used.user + used.system) / 1000;
      selfStart = process.cpuUsage();
    }
    const now = machineTicks();
    seconds.push({
      byProcess,
      machineBusyMs: ticksToMicros(now.busy - last.busy) / 1000,
      stealMs: ticksToMicros(now.steal - last.steal) / 1000,
    });
    last = now;
  }, options.intervalMs ?? 1_000);
  return {
    stop(): CpuSecond[] {
      clearInterval(timer);
      return seconds;
    },
  };
}

/** A per-second series for the notes: whole numbers, space-separated. */
export const series = (values: number[]) => values.map((v) => v.toFixed(0)).join(' ');

/** One line per process (and the machine) with its CPU ms in each second, for the notes. */
export function formatCpuSeconds(seconds: CpuSecond[]): string {
  if (seconds.length === 0) return 'no samples';
  const names = Object.keys(seconds[0]?.byProcess ?? {});
  const ours = seconds.map((s) => Object.values(s.byProcess).reduce((a, b) => a + b, 0));
  return [
    ...names.map((name) => `${name} ${series(seconds.map((s) => s.byProcess[name] ?? 0))}`),
    `all of ours ${series(ours)}`,
    `whole machine ${series(seconds.map((s) => s.machineBusyMs))}`,
    `steal ${series(seconds.map((s) => s.stealMs))}`,
  ].join('; ');
}
