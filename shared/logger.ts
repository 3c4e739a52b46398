import { pino, type Logger, type LoggerOptions, type DestinationStream } from 'pino';

/** Paths whose values never reach a log line: credentials, whatever the settings. */
export const SECRET_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["x-api-key"]',
  'headers.authorization',
  'headers.cookie',
  'headers["x-api-key"]',
  'password',
  '*.password',
  'apiKey',
  '*.apiKey',
  'token',
  '*.token',
  'secret',
  '*.secret',
];

/** Paths holding request/response bodies: redacted unless `logBodies` (LOG_BODIES=true) is set. */
export const BODY_PATHS = ['body', '*.body', 'responseBody', '*.responseBody'];

/** Everything redacted by default. */
export const REDACT_PATHS = [...SECRET_PATHS, ...BODY_PATHS];

export interface LoggerSettings {
  /** pino level. @default 'info' */
  level?: string;
  /** Bound to every line (e.g. `{ service: 'enqueuer' }`). */
  base?: Record<string, unknown>;
  /** Where lines go; default stdout (asynchronous, so logging stays off the hot path). */
  destination?: DestinationStream;
  /** Debugging aid: log bodies (up to 1 KiB of failed downstream answers). Secrets stay redacted. @default false */
  logBodies?: boolean;
}

/** pino options of the gateway's loggers (redaction, ISO time, level as a word). */
export function loggerOptions(settings: Omit<LoggerSettings, 'destination'> = {}): LoggerOptions {
  return {
    level: settings.level ?? 'info',
    base: { pid: process.pid, ...settings.base },
    redact: { paths: settings.logBodies ? SECRET_PATHS : REDACT_PATHS, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  };
}

/** The process's root logger; components take `logger.child({ component })`. */
export function createLogger(settings: LoggerSettings = {}): Logger {
  return pino(loggerOptions(settings), settings.destination ?? pino.destination({ sync: false }));
}
