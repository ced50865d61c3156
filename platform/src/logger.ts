import { type DestinationStream, type Logger, pino } from 'pino';
import { traceLogFields } from './telemetry.ts';

export type { Logger };

/**
 * Paths pino censors in every log line. Card data and credentials are never logged;
 * these are a second line of defence behind not passing them to the logger at all.
 */
export const redactPaths = [
  'req.headers.authorization',
  'req.headers.cookie',
  'headers.authorization',
  'authorization',
  '*.authorization',
  'token',
  '*.token',
  'accessToken',
  '*.accessToken',
  'access_token',
  '*.access_token',
  'apiKey',
  '*.apiKey',
  'api_key',
  '*.api_key',
  'secret',
  '*.secret',
  'pan',
  '*.pan',
  'cvc',
  '*.cvc',
  'variables',
  '*.variables',
  'privateKey',
  '*.privateKey',
];

export interface LoggerOptions {
  service: string;
  /** @default 'info' */
  level?: string;
  /** Where lines go; stdout by default. Tests pass a stream to capture lines. */
  destination?: DestinationStream;
}

export function createLogger({ service, level = 'info', destination }: LoggerOptions): Logger {
  return pino(
    {
      name: service,
      level,
      base: { service },
      redact: { paths: redactPaths, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
      // `trace_id` / `span_id` of the active span (nothing outside a trace or with tracing off),
      // so a log line leads to its trace and back.
      mixin: traceLogFields,
    },
    destination,
  );
}
