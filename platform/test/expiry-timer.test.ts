import { afterEach, describe, expect, it, vi } from 'vitest';
import { atExpiry, maxTimerMs } from '../src/index.ts';

describe('atExpiry', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('fires at the expiry, also one farther than a Node timer can wait, and not when cancelled', () => {
    vi.useFakeTimers({ now: 0 });
    const near = vi.fn();
    const far = vi.fn();
    const cancelled = vi.fn();
    atExpiry({ expiresAt: 60 }, near);
    const farAt = (3 * maxTimerMs) / 1000;
    atExpiry({ expiresAt: farAt }, far);
    atExpiry({ expiresAt: 60 }, cancelled)();
    vi.advanceTimersByTime(59_999);
    expect(near).not.toHaveBeenCalled();
    vi.advanceTimersByTime(1);
    expect(near).toHaveBeenCalledOnce();
    // One timer's range later, the far one is still waiting (a clamped timer would have fired).
    vi.advanceTimersByTime(maxTimerMs);
    expect(far).not.toHaveBeenCalled();
    vi.setSystemTime(farAt * 1000 - 1);
    vi.advanceTimersByTime(maxTimerMs);
    expect(far).toHaveBeenCalledOnce();
    expect(cancelled).not.toHaveBeenCalled();
  });

  it('fires asynchronously for an expiry already past or not a number', () => {
    vi.useFakeTimers({ now: 10_000 });
    const past = vi.fn();
    const notANumber = vi.fn();
    atExpiry({ expiresAt: 1 }, past);
    atExpiry({ expiresAt: Number.NaN }, notANumber);
    expect(past).not.toHaveBeenCalled();
    expect(notANumber).not.toHaveBeenCalled();
    vi.advanceTimersByTime(0);
    expect(past).toHaveBeenCalledOnce();
    expect(notANumber).toHaveBeenCalledOnce();
  });
});
