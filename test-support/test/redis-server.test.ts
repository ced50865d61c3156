/**
 * The throwaway redis-server: `stop()` must leave no process and no listener behind (a leftover
 * server answers the next test's "Redis is down"), and `start()` must not report a server that
 * is not running.
 */
import { createConnection, createServer } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { findRedisServer, type RedisServer, startRedisServer } from '../src/redis-server.ts';

/** True while something accepts connections on 127.0.0.1:`port`. */
function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ port, host: '127.0.0.1' });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

// CI always has redis-server: global-setup fails the run without it.
describe.skipIf(!findRedisServer())('startRedisServer', () => {
  const started: RedisServer[] = [];
  afterEach(async () => {
    for (const server of started.splice(0)) await server.stop();
  });

  it('stop() ends the process and its listener', async () => {
    const redis = await startRedisServer();
    started.push(redis);
    const pid = redis.pid!;
    expect(alive(pid)).toBe(true);
    expect(await listening(redis.port)).toBe(true);
    await redis.stop();
    expect(alive(pid)).toBe(false);
    expect(redis.pid).toBeUndefined();
    expect(await listening(redis.port)).toBe(false);
  });

  it('start() on a running server keeps that one, so stop() still ends it', async () => {
    const redis = await startRedisServer();
    started.push(redis);
    const pid = redis.pid!;
    await redis.start();
    expect(redis.pid).toBe(pid);
    await redis.stop();
    expect(alive(pid)).toBe(false);
    expect(await listening(redis.port)).toBe(false);
  });

  it('start() fails when redis-server exits instead of listening (its port taken meanwhile), rather than counting another listener as it', async () => {
    const redis = await startRedisServer();
    started.push(redis);
    await redis.stop();
    const squatter = createServer((socket) => socket.destroy());
    await new Promise<void>((resolve) => squatter.listen(redis.port, '127.0.0.1', resolve));
    try {
      await expect(redis.start()).rejects.toThrow(/redis-server exited before it listened on/);
      expect(redis.pid).toBeUndefined();
    } finally {
      await new Promise((resolve) => squatter.close(resolve));
    }
    // The port free again, the same server starts.
    await redis.start();
    expect(await listening(redis.port)).toBe(true);
  });

  it('start() fails, not crashes the worker, when the binary cannot be run', async () => {
    await expect(startRedisServer({ bin: '/nonexistent/redis-server' })).rejects.toThrow(/ENOENT/);
  });
});
