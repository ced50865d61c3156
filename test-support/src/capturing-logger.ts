import { Writable } from 'node:stream';
import { createLogger, type Logger } from '@ghostpay/platform';

export interface CapturingLoggerOptions {
  /** The logger's level: `debug` for a suite that checks every line (no PAN in any). @default 'info' */
  level?: string;
}

export interface CapturingLogger {
  logger: Logger;
  /** One raw line per entry, as a real destination receives it (ending in `\n`). */
  lines: string[];
  /** The lines so far, each parsed as JSON. */
  parsed<T = Record<string, unknown>>(): T[];
}

/**
 * A real service logger (`createLogger`, with its redaction) at `level` whose output lands in
 * `lines`, one raw line per entry, and `parsed()`: for tests of what gets logged. Several
 * replicas of a service may share one `logger` to have their lines in one list.
 */
export function capturingLogger(service = 'test', { level = 'info' }: CapturingLoggerOptions = {}): CapturingLogger {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk, _encoding, done) {
      lines.push(String(chunk));
      done();
    },
  });
  return {
    logger: createLogger({ service, level, destination }),
    lines,
    parsed: <T>() => lines.map((line) => JSON.parse(line) as T),
  };
}
