import { pino, type Logger, type LoggerOptions, type DestinationStream } from 'pino';

/** Paths whose values never reach a log line (credentials and bodies). */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'headers.authorization',
  'headers.cookie',
  'password',
  '*.password',
  'apiKey',
  '*.apiKey',
  'body',
  '*.body',
];

export interface LoggerSettings {
  /** pino level. @default 'info' */
  level?: string;
  /** Bound to every line (e.g. `{ service: 'enqueuer' }`). */
  base?: Record<string, unknown>;
  /** Where lines go; default stdout (asynchronous, so logging stays off the hot path). */
  destination?: DestinationStream;
}

/** The process's root logger; components take `logger.child({ component })`. */
export function createLogger(settings: LoggerSettings = {}): Logger {
  const options: LoggerOptions = {
    level: settings.level ?? 'info',
    base: { pid: process.pid, ...settings.base },
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  };
  return pino(options, settings.destination ?? pino.destination({ sync: false }));
}
