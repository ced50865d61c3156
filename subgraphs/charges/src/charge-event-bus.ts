import type { DatabaseHandle } from '@ghostpay/db';
import type { Logger } from 'pino';
import { type ChargeEventNotice, chargeEventsChannel } from './charge-events.ts';

export type ChargeNoticeListener = () => void;

export interface ChargeEventBus {
  /**
   * Calls `listener` whenever an event for `chargeId` commits (and after a lost LISTEN
   * connection came back, since notifications may have been missed). Resolves once LISTEN
   * is active; returns the unsubscribe function.
   */
  subscribe(chargeId: string, listener: ChargeNoticeListener): Promise<() => void>;
  readonly subscriberCount: number;
  close(): Promise<void>;
}

/**
 * One LISTEN per service process on `charge_events`, fanned out in memory to the
 * subscriptions of this process. Started on the first subscription, stopped on close.
 * NOTIFY reaches every replica, so each one serves its own subscribers.
 */
export function createChargeEventBus(database: DatabaseHandle, logger: Logger): ChargeEventBus {
  const listeners = new Map<string, Set<ChargeNoticeListener>>();
  let listening: Promise<() => Promise<void>> | undefined;
  let closed = false;
  let count = 0;

  const dispatch = (chargeId: string) => {
    for (const listener of listeners.get(chargeId) ?? []) listener();
  };
  const onPayload = (payload: string) => {
    let notice: ChargeEventNotice;
    try {
      notice = JSON.parse(payload) as ChargeEventNotice;
    } catch {
      logger.warn('ignoring a charge_events notification that is not JSON');
      return;
    }
    if (typeof notice.chargeId === 'string') dispatch(notice.chargeId);
  };
  const onReconnect = () => {
    logger.warn('charge_events LISTEN reconnected; resynchronising subscriptions');
    for (const chargeId of listeners.keys()) dispatch(chargeId);
  };

  return {
    get subscriberCount() {
      return count;
    },
    async subscribe(chargeId, listener) {
      if (closed) throw new Error('charge event bus is closed');
      listening ??= database.listen(chargeEventsChannel, onPayload, onReconnect);
      try {
        await listening;
      } catch (error) {
        listening = undefined;
        throw error;
      }
      let set = listeners.get(chargeId);
      if (!set) {
        set = new Set();
        listeners.set(chargeId, set);
      }
      set.add(listener);
      count++;
      let active = true;
      return () => {
        if (!active) return;
        active = false;
        count--;
        set.delete(listener);
        if (set.size === 0) listeners.delete(chargeId);
      };
    },
    async close() {
      closed = true;
      listeners.clear();
      const stop = await listening?.catch(() => undefined);
      listening = undefined;
      await stop?.();
    },
  };
}
