/** 0 closed (calls flow), 1 half-open (one trial call), 2 open (calls refused at once). */
export const BreakerState = { closed: 0, halfOpen: 1, open: 2 } as const;
export type BreakerState = (typeof BreakerState)[keyof typeof BreakerState];

export interface CircuitBreakerOptions {
  /** Consecutive failures that open the breaker. @default 5 */
  failureThreshold?: number;
  /** How long it stays open before letting one trial call through. @default 5000 */
  openMs?: number;
  onStateChange?: (state: BreakerState) => void;
  now?: () => number;
}

export interface CircuitBreaker {
  readonly state: BreakerState;
  /** Whether a call may go out now; in half-open only one trial call is allowed at a time. */
  tryAcquire(): boolean;
  success(): void;
  failure(): void;
}

/**
 * A consecutive-failure circuit breaker. Open: calls fail fast without touching the network;
 * after `openMs` one trial call goes through (half-open): success closes, failure reopens.
 */
export function createCircuitBreaker(options: CircuitBreakerOptions = {}): CircuitBreaker {
  const threshold = options.failureThreshold ?? 5;
  const openMs = options.openMs ?? 5_000;
  const now = options.now ?? Date.now;
  let state: BreakerState = BreakerState.closed;
  let failures = 0;
  let openedAt = 0;
  let trialInFlight = false;
  const set = (next: BreakerState) => {
    if (next !== state) {
      state = next;
      options.onStateChange?.(next);
    }
  };
  return {
    get state() {
      return state;
    },
    tryAcquire() {
      if (state === BreakerState.closed) return true;
      if (state === BreakerState.open && now() - openedAt >= openMs) set(BreakerState.halfOpen);
      if (state === BreakerState.halfOpen && !trialInFlight) {
        trialInFlight = true;
        return true;
      }
      return false;
    },
    success() {
      failures = 0;
      trialInFlight = false;
      set(BreakerState.closed);
    },
    failure() {
      trialInFlight = false;
      failures++;
      if (state === BreakerState.halfOpen || failures >= threshold) {
        openedAt = now();
        set(BreakerState.open);
      }
    },
  };
}
