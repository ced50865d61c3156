import { maxTimerMs } from './config.ts';
import type { Principal } from './scopes.ts';

/**
 * Calls `onExpiry` once `principal`'s token has expired (asynchronously, even when it already
 * has), and returns what cancels it; the timer never holds the process open. A Node timer waits
 * at most {@link maxTimerMs} (about 24.8 days; a longer one fires after 1 ms), so a farther
 * expiry is waited for in steps, each re-reading the time left. An expiry that is not a number
 * ends at once. The router's subscriptions and charges' subscription sockets end at it.
 */
export function atExpiry(principal: Pick<Principal, 'expiresAt'>, onExpiry: () => void): () => void {
  const expiresAtMs = principal.expiresAt * 1000;
  let timer: NodeJS.Timeout;
  const arm = () => {
    timer = setTimeout(check, Math.min(Math.max(0, expiresAtMs - Date.now()) || 0, maxTimerMs));
    timer.unref();
  };
  const check = () => (expiresAtMs - Date.now() > 0 ? arm() : onExpiry());
  arm();
  return () => clearTimeout(timer);
}
