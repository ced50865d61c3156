import { Writable } from 'node:stream';
import { createLogger, type Logger } from '@ghostpay/platform';

/**
 * A real service logger (`createLogger`, with its redaction) at `info` whose output lands in
 * `lines`, one raw line per entry, and `parsed()`: for tests of what gets logged.
 */
export function capturingLogger(service = 'test'): { logger: Logger; lines: string[]; parsed: () => Record<string, unknown>[] } {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk, _encoding, done) {
      lines.push(String(chunk));
      done();
    },
  });
  return { logger: createLogger({ service, destination }), lines, parsed: () => lines.map((line) => JSON.parse(line)) };
}
