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

/**
 * CPU time of a server process tree read from /proc: the process (all its threads), every
 * process it forked (PostgreSQL's backends), and those it has reaped. Backends of pooled
 * connections live for the whole measurement, so a window's figure is complete.
 */
export function serverCpu(pid: number): { mark(): void; cpuMicros(): number; syscalls(): number } {
  /** The processes of the tree now, with their stat fields: the server, then the processes it forked. */
  const tree = () => {
    const processes = [{ pid, stat: statOf(pid) }];
    for (const entry of readdirSync('/proc')) {
      const child = Number(entry);
      if (!(child > 0) || child === pid) continue;
      const stat = statOf(child);
      if (stat && field(stat, 4) === pid) processes.push({ pid: child, stat });
    }
    return processes;
  };
  /** utime + stime of the tree, in ticks. */
  const total = () => {
    let ticks = 0;
    for (const one of tree()) {
      if (!one.stat) continue;
      ticks += field(one.stat, 14) + field(one.stat, 15);
      // The server also carries the cutime + cstime of the children it has reaped.
      if (one.pid === pid) ticks += field(one.stat, 16) + field(one.stat, 17);
    }
    return ticks;
  };
  const totalSyscalls = () => tree().reduce((sum, one) => sum + ioSyscalls(one.pid), 0);
  let marked = total();
  let markedSyscalls = totalSyscalls();
  return {
    mark() {
      marked = total();
      markedSyscalls = totalSyscalls();
    },
    cpuMicros() {
      return ((total() - marked) * 1_000_000) / ticksPerSecond;
    },
    /** Read/write-family syscalls of the tree since `mark` (backends that exited meanwhile are not counted). */
    syscalls() {
      return totalSyscalls() - markedSyscalls;
    },
  };
}
