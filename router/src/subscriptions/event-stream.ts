/**
 * A push-based async iterator: the producer calls `push`/`end`, the transport (graphql-ws or
 * graphql-sse) pulls with `next()` and calls `return()` when the client goes away. It has
 * `return` and `throw`, so both libraries recognise it as an async generator and stop it on
 * client `complete` and on disconnect.
 */
export interface EventStream<T> extends AsyncGenerator<T, undefined, unknown> {
  push(value: T): void;
  /** Ends the stream after the queued values (and `last`, when given). Idempotent. */
  end(last?: T): void;
  readonly ended: boolean;
}

/** `onEnd` runs once, whichever side ends the stream first. */
export function createEventStream<T>(onEnd: () => void): EventStream<T> {
  const queue: T[] = [];
  let ended = false;
  let finished = false;
  let wake: (() => void) | undefined;

  const finish = () => {
    if (finished) return;
    finished = true;
    ended = true;
    queue.length = 0;
    wake?.();
    onEnd();
  };

  const stream: EventStream<T> = {
    get ended() {
      return ended;
    },
    push(value) {
      if (ended) return;
      queue.push(value);
      wake?.();
    },
    end(last) {
      if (ended) return;
      if (last !== undefined) queue.push(last);
      ended = true;
      wake?.();
    },
    async next() {
      for (;;) {
        if (queue.length > 0) return { done: false, value: queue.shift() as T };
        if (ended) {
          finish();
          return { done: true, value: undefined };
        }
        await new Promise<void>((resolve) => (wake = resolve));
        wake = undefined;
      }
    },
    async return() {
      finish();
      return { done: true, value: undefined };
    },
    async throw(error?: unknown) {
      finish();
      throw error;
    },
    [Symbol.asyncIterator]() {
      return stream;
    },
    async [Symbol.asyncDispose]() {
      finish();
    },
  };
  return stream;
}
