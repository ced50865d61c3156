import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { formatCpuSeconds, startCpuSampler, stealMeter } from '../src/cpu-sampler.ts';
import { measureLoopback } from '../src/loopback.ts';
import { ioSyscalls, serverCpu } from '../src/server-cpu.ts';

/**
 * The per-process figures of the bench's split (CPU ms and read+write syscalls per charge)
 * come from /proc. A "server" here is a Node process that, on a line on stdin, burns a given
 * amount of CPU time itself or in a child it forks (like PostgreSQL's backends), or makes
 * N write calls.
 */
const serverScript = `
const { spawn } = require('node:child_process');
const { openSync, writeSync } = require('node:fs');
const burn = (ms) => { const start = process.cpuUsage(); while (true) { const u = process.cpuUsage(start); if ((u.user + u.system) / 1000 >= ms) break; } };
const devNull = openSync('/dev/null', 'w');
const kids = [];
process.stdin.setEncoding('utf8');
process.stdin.on('data', (line) => {
  const [what, n] = line.trim().split(' ');
  const child = (exit) => spawn(process.execPath, ['-e', 'const s = process.cpuUsage(); while (true) { const u = process.cpuUsage(s); if ((u.user + u.system) / 1000 >= ' + n + ') break; } process.stdout.write("burnt\\\\n");' + (exit ? '' : ' setInterval(() => {}, 1000);')], { stdio: ['ignore', 'pipe', 'inherit'] });
  if (what === 'burn') { burn(Number(n)); process.stdout.write('done\\n'); }
  if (what === 'writes') { for (let i = 0; i < Number(n); i++) writeSync(devNull, 'x'); process.stdout.write('done\\n'); }
  if (what === 'child' || what === 'reaped-child') {
    const kid = child(what === 'reaped-child');
    kids.push(kid);
    kid.stdout.once('data', () => (what === 'child' ? process.stdout.write('done\\n') : kid.once('exit', () => process.stdout.write('done\\n'))));
  }
});
process.on('SIGTERM', () => { for (const k of kids) k.kill(); process.exit(0); });
process.stdout.write('ready\\n');
`;

let server: ChildProcess | undefined;
afterEach(async () => {
  if (server && server.exitCode === null) {
    server.kill('SIGTERM');
    await once(server, 'exit');
  }
});

async function startServer() {
  server = spawn(process.execPath, ['-e', serverScript], { stdio: ['pipe', 'pipe', 'inherit'] });
  server.stdout?.setEncoding('utf8');
  await once(server.stdout as NodeJS.ReadableStream, 'data');
  const ask = async (line: string) => {
    const answered = once(server?.stdout as NodeJS.ReadableStream, 'data');
    server?.stdin?.write(`${line}\n`);
    await answered;
  };
  return { pid: server.pid as number, ask };
}

describe('serverCpu', () => {
  it("counts the process's own CPU time from the mark on, not before", async () => {
    const { pid, ask } = await startServer();
    await ask('burn 200');
    const cpu = serverCpu(pid);
    await ask('burn 300');
    const ms = cpu.cpuMicros() / 1000;
    // /proc counts in 10 ms ticks; the 200 ms before the mark are left out.
    expect(ms).toBeGreaterThanOrEqual(280);
    expect(ms).toBeLessThan(480);
  });

  it('counts a forked child while it lives, and after the server reaped it', async () => {
    const { pid, ask } = await startServer();
    const cpu = serverCpu(pid);
    await ask('child 200');
    expect(cpu.cpuMicros() / 1000).toBeGreaterThanOrEqual(180);
    cpu.mark();
    await ask('reaped-child 200');
    expect(cpu.cpuMicros() / 1000).toBeGreaterThanOrEqual(180);
  });
});

describe('ioSyscalls', () => {
  it('counts each write call of the process, and serverCpu counts them from the mark', async () => {
    const { pid, ask } = await startServer();
    const before = ioSyscalls(pid);
    const cpu = serverCpu(pid);
    await ask('writes 500');
    const counted = ioSyscalls(pid) - before;
    // 500 writes to /dev/null, plus the few reads and writes of the stdin/stdout exchange.
    expect(counted).toBeGreaterThanOrEqual(500);
    expect(counted).toBeLessThan(600);
    expect(cpu.syscalls()).toBeGreaterThanOrEqual(500);
    expect(cpu.syscalls()).toBeLessThan(600);
  });

  it('is 0 for a process that is gone', () => {
    expect(ioSyscalls(2 ** 22 + 12345)).toBe(0);
  });
});

describe('measureLoopback', () => {
  it('prices a loopback round trip in CPU of both ends, back to back and with both sides asleep', async () => {
    const busy = await measureLoopback(300);
    expect(busy.roundTrips).toBeGreaterThan(10);
    expect(busy.cpuMicrosPerRoundTrip).toBeGreaterThan(0);
    const idle = await measureLoopback(300, { idle: true });
    // The 1 ms pause after each round trip is in the wall time of every one.
    expect(idle.wallMicrosPerRoundTrip).toBeGreaterThanOrEqual(1_000);
    expect(idle.roundTrips).toBeLessThanOrEqual(300);
    expect(idle.cpuMicrosPerRoundTrip).toBeGreaterThan(0);
  });
});

describe('startCpuSampler', () => {
  it("gives each second's CPU of each process, this process's own, and the whole machine's", async () => {
    const { pid, ask } = await startServer();
    const sampler = startCpuSampler([{ name: 'server', pid }], { self: 'me', intervalMs: 200 });
    await ask('burn 300');
    await new Promise((resolve) => setTimeout(resolve, 450));
    const seconds = sampler.stop();
    expect(seconds.length).toBeGreaterThanOrEqual(2);
    const server = seconds.reduce((sum, s) => sum + (s.byProcess.server ?? 0), 0);
    // The burn may straddle the last sample: at least most of it lands in the samples.
    expect(server).toBeGreaterThanOrEqual(150);
    for (const s of seconds) {
      expect(s.byProcess.me).toBeGreaterThanOrEqual(0);
      // The machine was at least as busy as the process, give or take one 10 ms tick per CPU.
      expect(s.machineBusyMs + 20).toBeGreaterThanOrEqual(s.byProcess.server ?? 0);
    }
    expect(formatCpuSeconds(seconds)).toMatch(/^server [\d ]+; me [\d ]+; all of ours [\d ]+; whole machine [\d ]+; steal [\d ]+$/);
  });

  it("a window's steal is a share of the machine's CPU time: 0–100%", async () => {
    const steal = stealMeter();
    await new Promise((resolve) => setTimeout(resolve, 100));
    const percent = steal.percent();
    expect(percent).toBeGreaterThanOrEqual(0);
    expect(percent).toBeLessThanOrEqual(100);
  });
});
