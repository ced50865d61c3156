/**
 * A start that cannot go on for a reason the person starting it can fix (a port in use, the
 * data directory in use or not writable, a bad variable, another directory's secrets): its
 * message says what and what to do, and `npm start` prints that message alone, without a stack
 * trace, and exits 1. Anything else is a bug and is printed whole.
 */
export class StackStartError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'StackStartError';
  }
}

/**
 * A start stopped by a signal (Ctrl-C, SIGTERM) before it finished: `startStack` stopped what
 * had started, in reverse order, before throwing it. `npm start` then exits 128 + the signal's
 * number (130 for SIGINT, 143 for SIGTERM), as a shell reports a process a signal stopped.
 */
export class StackStartInterruptedError extends StackStartError {
  readonly signal: string;
  constructor(signal: string) {
    super(`stopped by ${signal} while starting; what had started was stopped and the data directory is free`);
    this.name = 'StackStartInterruptedError';
    this.signal = signal;
  }
}
