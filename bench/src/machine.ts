import { cpus, loadavg, totalmem } from 'node:os';

/** The machine the figures were measured on (they are only comparable on the same one). */
export function machineDetails() {
  const cpu = cpus();
  return {
    cpuModel: cpu[0]?.model.trim() ?? 'unknown',
    cores: cpu.length,
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    date: new Date().toISOString(),
    /** 1-minute load average when the run started: the machine may be shared. */
    loadAverage: Math.round((loadavg()[0] ?? 0) * 10) / 10,
  };
}
