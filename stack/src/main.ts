import { constants } from 'node:os';
import { startTelemetry } from '@ghostpay/platform/telemetry';

// Tracing first, so the modules it instruments (http, pg) load after it: the rest is imported
// below. One process, one SDK: every service of the stack reports as `ghostpay-stack`.
const telemetry = startTelemetry({ serviceName: 'ghostpay-stack' });

// A signal while the stack starts (Ctrl-C right after `npm start`, a supervisor's SIGTERM)
// stops the start between two steps: what had started is stopped in order (PGlite closed, the
// data-directory locks released, the servers closed) and the process exits 128 + the signal's
// number. Without these handlers Node's default ended the process at once, mid-write to PGlite,
// locks left behind. A second signal ends it at once.
const startup = new AbortController();
const exitCodeOf = (signal: NodeJS.Signals) => 128 + constants.signals[signal];
const onSignalWhileStarting = (signal: NodeJS.Signals) => {
  if (startup.signal.aborted) process.exit(exitCodeOf(signal));
  startup.abort(signal);
};
process.on('SIGINT', onSignalWhileStarting);
process.on('SIGTERM', onSignalWhileStarting);

const { createLogger, exitOnSignals } = await import('@ghostpay/platform');
const { formatBanner } = await import('./banner.ts');
const { startStack } = await import('./start-stack.ts');
const { StackStartError, StackStartInterruptedError } = await import('./start-error.ts');

const logger = createLogger({ service: 'stack', level: process.env.LOG_LEVEL ?? 'warn' });
let stack: Awaited<ReturnType<typeof startStack>>;
try {
  stack = await startStack({ logger, signal: startup.signal });
} catch (error) {
  // startStack has stopped what it started. A reason the person can fix (a port, the data
  // directory, a variable) is its message alone; anything else is a bug, printed whole.
  process.stderr.write(
    error instanceof StackStartError ? `npm start: ${error.message}\n` : `npm start failed: ${(error as Error)?.stack ?? error}\n`,
  );
  await telemetry.shutdown();
  process.exit(error instanceof StackStartInterruptedError ? exitCodeOf(error.signal as NodeJS.Signals) : 1);
}
// Handlers first: anyone who reads the banner may stop us at once, and that stop must be clean.
process.off('SIGINT', onSignalWhileStarting);
process.off('SIGTERM', onSignalWhileStarting);
exitOnSignals(logger, async () => {
  await stack.close();
  await telemetry.shutdown();
});
process.stdout.write(`${formatBanner(stack)}\n`);
