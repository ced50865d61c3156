import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { connect } from 'node:net';
import { serverCpu } from './server-cpu.ts';

/**
 * What one socket message costs on this machine: a Node process and an echoing Node child
 * ping-pong a small message over loopback TCP, one in flight, for `durationMs`. Every
 * process of the charge path pays this per message (each is a write on one side and a read
 * on the other, plus waking the reader), and the charge path exchanges more of them per
 * charge than the DB limit does: this is the figure that prices the difference.
 */
export interface LoopbackCost {
  roundTrips: number;
  /** CPU of both processes per round trip (two messages), µs. */
  cpuMicrosPerRoundTrip: number;
  /** Wall time per round trip, µs. */
  wallMicrosPerRoundTrip: number;
}

const echoScript = `
const { createServer } = require('node:net');
const server = createServer((socket) => { socket.setNoDelay(true); socket.on('data', (chunk) => socket.write(chunk)); });
server.listen(0, '127.0.0.1', () => process.send({ port: server.address().port }));
process.on('disconnect', () => process.exit(0));
`;

/**
 * `idle`: a 1 ms pause after each round trip, so both processes sleep before every message,
 * as the processes of the charge path do at a few hundred charges per second (each message
 * then also pays for waking its reader, and the pause's own timer wakes the sender).
 */
export async function measureLoopback(durationMs = 1_000, options: { idle?: boolean } = {}): Promise<LoopbackCost> {
  const child = spawn(process.execPath, ['-e', echoScript], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  try {
    const [{ port }] = (await once(child, 'message')) as [{ port: number }];
    const socket = connect(port, '127.0.0.1');
    socket.setNoDelay(true);
    await once(socket, 'connect');
    const message = Buffer.alloc(200, 'x');
    const ping = () =>
      new Promise<void>((resolve) => {
        let received = 0;
        const onData = (chunk: Buffer) => {
          received += chunk.length;
          if (received < message.length) return;
          socket.off('data', onData);
          resolve();
        };
        socket.on('data', onData);
        socket.write(message);
      });
    for (let i = 0; i < 200; i++) await ping(); // warm-up
    const childCpu = serverCpu(child.pid as number);
    const ownStart = process.cpuUsage();
    const started = performance.now();
    let roundTrips = 0;
    while (performance.now() - started < durationMs) {
      await ping();
      roundTrips++;
      if (options.idle) await new Promise((resolve) => setTimeout(resolve, 1));
    }
    const wallMs = performance.now() - started;
    const own = process.cpuUsage(ownStart);
    const cpuMicros = own.user + own.system + childCpu.cpuMicros();
    socket.destroy();
    return {
      roundTrips,
      cpuMicrosPerRoundTrip: cpuMicros / roundTrips,
      wallMicrosPerRoundTrip: (wallMs * 1000) / roundTrips,
    };
  } finally {
    child.disconnect();
    if (child.exitCode === null) await once(child, 'exit');
  }
}
