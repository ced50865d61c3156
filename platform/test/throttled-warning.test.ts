import { describe, expect, it } from 'vitest';
import { failFastRedisOptions, throttledWarning } from '../src/index.ts';

describe('throttledWarning', () => {
  it('logs the first failure with its message, then at most once per interval', async () => {
    const lines: unknown[][] = [];
    const warn = throttledWarning({ warn: (...args: unknown[]) => lines.push(args) } as never, 50);
    warn(new Error('ECONNREFUSED'), 'store unavailable');
    warn(new Error('ECONNREFUSED'), 'store unavailable');
    expect(lines).toEqual([[{ err: 'ECONNREFUSED' }, 'store unavailable']]);
    await new Promise((resolve) => setTimeout(resolve, 80));
    warn(new Error('timeout'), 'store unavailable');
    expect(lines).toHaveLength(2);
    expect(lines[1]).toEqual([{ err: 'timeout' }, 'store unavailable']);
  });
});

describe('failFastRedisOptions', () => {
  it('never queues or retries a command, times it out, and keeps reconnecting at most 2 s apart', () => {
    const options = failFastRedisOptions(300);
    expect(options).toMatchObject({ enableOfflineQueue: false, maxRetriesPerRequest: 0, commandTimeout: 300 });
    expect([1, 5, 100].map(options.retryStrategy)).toEqual([200, 1_000, 2_000]);
  });
});
