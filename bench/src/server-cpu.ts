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
 * Read- and write-family system calls a process has made (`syscr` + `syscw` of
 * /proc/<pid>/io: read, write, writev… — socket I/O through them included; recv/send,
 * sendmsg and epoll not, so PostgreSQL's client traffic is not in it); 0 when unreadable.
 * Every socket message is one, so per operation it counts the messages a process exchanges.
 */
export function ioSyscalls(pid: number): number {
  try {
    const io = readFileSync(`/proc/${pid}/io`, 'utf8');
    const count = (name: string) => Number(io.match(new RegExp(`^${name}: (\\d+)`, 'm'))?.[1] ?? 0);
    return count('syscr') + count('syscw');
  } catch {
    return 0;
  }
}

/** Every process now, pid → its stat fields: one pass over /proc, shared by every tree read from it. */
export function processTable(): Map<number, string[]> {
  const table = new Map<number, string[]>();
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!(pid > 0)) continue;
    const stat = statOf(pid);
    if (stat) table.set(pid, stat);
  }
  return table;
}

/** The pids of a tree in `table`: the server, then the processes it forked. */
export function treePids(table: Map<number, string[]>, pid: number): number[] {
  const pids = [pid];
  for (const [child, stat] of table) if (child !== pid && field(stat, 4) === pid) pids.push(child);
  return pids;
}

/** utime + stime of a tree in `table`, in ticks, with the cutime + cstime of the children the server has reaped. */
export function treeTicks(table: Map<number, string[]>, pid: number): number {
  let ticks = 0;
  for (const one of treePids(table, pid)) {
    const stat = table.get(one);
    if (!stat) continue;
    ticks += field(stat, 14) + field(stat, 15);
    if (one === pid) ticks += field(stat, 16) + field(stat, 17);
  }
  return ticks;
}

export const ticksToMicros = (ticks: number) => (ticks * 1_000_000) / ticksPerSecond;

/**
 * CPU time of a server process tree read from /proc: the process (all its threads), every
 * process it forked (PostgreSQL's backends), and those it has reaped. Backends of pooled
 * connections live for the whole measurement, so a window's figure is complete.
 */
export function serverCpu(pid: number): { mark(): void; cpuMicros(): number; syscalls(): number } {
  const totalSyscalls = () => treePids(processTable(), pid).reduce((sum, one) => sum + ioSyscalls(one), 0);
  let marked = treeTicks(processTable(), pid);
  let markedSyscalls = totalSyscalls();
  return {
    mark() {
      marked = treeTicks(processTable(), pid);
      markedSyscalls = totalSyscalls();
    },
    cpuMicros() {
      return ticksToMicros(treeTicks(processTable(), pid) - marked);
    },
    /** Read/write-family syscalls of the tree since `mark` (backends that exited meanwhile are not counted). */
    syscalls() {
      return totalSyscalls() - markedSyscalls;
    },
  };
}
