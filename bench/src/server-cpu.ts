import { readdirSync, readFileSync } from 'node:fs';

/** Clock ticks per second of /proc's utime/stime (USER_HZ: 100 on Linux everywhere in practice). */
const ticksPerSecond = 100;

/** The fields of /proc/<pid>/stat after the parenthesised command name (which may hold spaces); `undefined` once it is gone. */
function statOf(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}
/** Field n (1-based, as in proc(5)) of a stat split by statOf. */
const field = (fields: string[], n: number) => Number(fields[n - 3]);

/**
 * CPU time of a server process tree read from /proc: the process (all its threads), every
 * process it forked (PostgreSQL's backends), and those it has reaped. Backends of pooled
 * connections live for the whole measurement, so a window's figure is complete.
 */
export function serverCpu(pid: number): { mark(): void; cpuMicros(): number } {
  const total = () => {
    const root = statOf(pid);
    if (!root) return 0;
    // utime + stime + the reaped children's cutime + cstime.
    let ticks = field(root, 14) + field(root, 15) + field(root, 16) + field(root, 17);
    for (const entry of readdirSync('/proc')) {
      const child = Number(entry);
      if (!(child > 0) || child === pid) continue;
      const stat = statOf(child);
      if (stat && field(stat, 4) === pid) ticks += field(stat, 14) + field(stat, 15);
    }
    return ticks;
  };
  let marked = total();
  return {
    mark() {
      marked = total();
    },
    cpuMicros() {
      return ((total() - marked) * 1_000_000) / ticksPerSecond;
    },
  };
}
