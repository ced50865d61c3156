/**
 * test-support's throwaway redis-server (here because test-support has no test project of its
 * own, like summary-reporter.test.ts): a server someone else killed reads as gone, and stopping
 * it returns at once instead of waiting for an exit event that already fired (the hook then hung
 * until its timeout).
 */
import { startRedisServer } from '@ghostpay/test-support';
import { expect, it } from 'vitest';

it('treats a redis-server killed by a signal from outside as gone: no pid, and stop() returns', async () => {
  const redis = await startRedisServer();
  const pid = redis.pid;
  expect(pid).toBeGreaterThan(0);
  process.kill(pid!, 'SIGKILL');
  // The server's own 'exit' has fired by the time its port refuses; poll the pid getter instead of sleeping.
  await expect.poll(() => redis.pid, { timeout: 5_000 }).toBeUndefined();
  const stopped = await Promise.race([redis.stop().then(() => 'stopped'), new Promise((resolve) => setTimeout(resolve, 3_000, 'hung'))]);
  expect(stopped).toBe('stopped');
  // And it starts again on the same port.
  await redis.start();
  expect(redis.pid).toBeGreaterThan(0);
  const again = redis.pid!;
  await redis.stop();
  expect(() => process.kill(again, 0)).toThrow();
});
