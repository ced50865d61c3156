import { createLogger, exitOnSignals } from '@ghostpay/platform';
import { formatBanner } from './banner.ts';
import { startStack } from './start-stack.ts';

const logger = createLogger({ service: 'stack', level: process.env.LOG_LEVEL ?? 'warn' });
const stack = await startStack({ logger });
process.stdout.write(`${formatBanner(stack)}\n`);
exitOnSignals(logger, () => stack.close());
