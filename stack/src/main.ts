import { startTelemetry } from '@ghostpay/platform/telemetry';

// Tracing first, so the modules it instruments (http, pg) load after it: the rest is imported
// below. One process, one SDK: every service of the stack reports as `ghostpay-stack`.
const telemetry = startTelemetry({ serviceName: 'ghostpay-stack' });
const { createLogger, exitOnSignals } = await import('@ghostpay/platform');
const { formatBanner } = await import('./banner.ts');
const { startStack } = await import('./start-stack.ts');
const { StackStartError } = await import('./start-error.ts');

const logger = createLogger({ service: 'stack', level: process.env.LOG_LEVEL ?? 'warn' });
let stack: Awaited<ReturnType<typeof startStack>>;
try {
  stack = await startStack({ logger });
} catch (error) {
  // startStack has stopped what it started. A reason the person can fix (a port, the data
  // directory, a variable) is its message alone; anything else is a bug, printed whole.
  process.stderr.write(
    error instanceof StackStartError ? `npm start: ${error.message}\n` : `npm start failed: ${(error as Error)?.stack ?? error}\n`,
  );
  await telemetry.shutdown();
  process.exit(1);
}
// Handlers first: anyone who reads the banner may stop us at once, and that stop must be clean.
exitOnSignals(logger, async () => {
  await stack.close();
  await telemetry.shutdown();
});
process.stdout.write(`${formatBanner(stack)}\n`);
