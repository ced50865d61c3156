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
