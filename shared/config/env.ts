import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { ConfigError, formatZodIssues } from './services.ts';

/** Integer from an environment string. */
export const envInt = (min: number, max: number, fallback: number) =>
  z.coerce.number().int().min(min).max(max).default(fallback);

/** Settings every process that talks to the broker reads from the environment. */
export const brokerEnvShape = {
  /** Broker URL, or a comma-separated list of a cluster's nodes; `amqps://` for TLS. @default amqp://guest:guest@127.0.0.1:5672 */
  RABBITMQ_URL: z
    .string()
    .refine((v) => v.split(',').every((u) => /^amqps?:\/\/\S+$/.test(u.trim())), 'must be amqp:// or amqps:// URLs, comma-separated for a cluster')
    .default('amqp://guest:guest@127.0.0.1:5672'),
  /** Prefix of every broker object name. @default gw */
  GW_PREFIX: z.string().regex(/^[a-z0-9][a-z0-9-]{0,30}$/).default('gw'),
  /** AMQP heartbeat (s). @default 10 */
  HEARTBEAT_S: envInt(1, 600, 10),
  /** `true` sends the AMQP frames one event-loop turn produces in one socket write (fewer syscalls; see docs/adr/0006). @default true */
  AMQP_WRITE_BATCHING: z.enum(['true', 'false']).default('true'),
  /** Management API base URL with credentials (e.g. http://gw-monitor:...@rabbitmq:15672), read for the broker's feature flags at start-up. Optional. */
  RABBITMQ_MANAGEMENT_URL: z.string().regex(/^https?:\/\/\S+$/, 'must be an http:// or https:// URL').optional(),
  /** OTLP/HTTP endpoint to export spans to (e.g. http://otel-collector:4318; `/v1/traces` is appended). Unset = no export and no SDK loaded. */
  OTEL_EXPORTER_OTLP_ENDPOINT: z.string().regex(/^https?:\/\/\S+$/, 'must be an http:// or https:// URL').optional(),
  /** `service.name` of the exported spans. @default the role (enqueuer, dequeuer) */
  OTEL_SERVICE_NAME: z.string().min(1).max(128).optional(),
  /** `assert` declares the topology at start-up; `passive` only checks it exists (locked-down broker). @default assert */
  TOPOLOGY_MODE: z.enum(['assert', 'passive']).default('assert'),
  /** CA bundle (PEM) for `amqps://`. */
  AMQP_CA_FILE: z.string().optional(),
  /** Client certificate (PEM) for `amqps://` with peer verification. */
  AMQP_CERT_FILE: z.string().optional(),
  /** Client key (PEM) for `amqps://`. */
  AMQP_KEY_FILE: z.string().optional(),
  /** Delay unit of the binary delay levels (ms); must match the declared topology. @default 100 */
  DELAY_UNIT_MS: envInt(1, 60_000, 100),
  /** Retention of the events stream by age (`x-max-age`: a number and Y, M, D, h, m or s); must match the declared stream. @default 1h */
  EVENTS_MAX_AGE: z.string().regex(/^[1-9][0-9]{0,8}[YMDhms]$/, 'a number and one of Y, M, D, h, m, s (e.g. 1h, 7D)').default('1h'),
  /** Retention of the events stream by size (bytes); must match the declared stream. @default 268435456 (256 MiB) */
  EVENTS_MAX_BYTES: envInt(1024 * 1024, 2 ** 50, 256 * 1024 * 1024),
  /** pino level. @default info */
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  /** Debugging aid: `true` logs up to 1 KiB of failed downstream answers' bodies (secrets stay redacted). @default false */
  LOG_BODIES: z.enum(['true', 'false']).default('false'),
};

/** Parses the given keys of the environment; throws a {@link ConfigError} listing every bad key. */
export function parseEnv<S extends z.ZodRawShape>(shape: S, env: NodeJS.ProcessEnv, source: string): z.infer<z.ZodObject<S>> {
  const picked: Record<string, unknown> = {};
  for (const key of Object.keys(shape)) if (env[key] !== undefined && env[key] !== '') picked[key] = env[key];
  const parsed = z.object(shape).safeParse(picked);
  if (!parsed.success) throw new ConfigError(source, formatZodIssues(parsed.error));
  return parsed.data;
}

/** TLS material for amqplib from the `AMQP_*_FILE` settings. */
export function readTls(cfg: { AMQP_CA_FILE?: string | undefined; AMQP_CERT_FILE?: string | undefined; AMQP_KEY_FILE?: string | undefined }):
  { ca?: Buffer[]; cert?: Buffer; key?: Buffer } | undefined {
  if (!cfg.AMQP_CA_FILE && !cfg.AMQP_CERT_FILE && !cfg.AMQP_KEY_FILE) return undefined;
  return {
    ...(cfg.AMQP_CA_FILE ? { ca: [readFileSync(cfg.AMQP_CA_FILE)] } : {}),
    ...(cfg.AMQP_CERT_FILE ? { cert: readFileSync(cfg.AMQP_CERT_FILE) } : {}),
    ...(cfg.AMQP_KEY_FILE ? { key: readFileSync(cfg.AMQP_KEY_FILE) } : {}),
  };
}

/** The settings both services derive from {@link brokerEnvShape}. */
export interface BrokerSettings {
  rabbitmqUrl: string;
  prefix: string;
  heartbeatS: number;
  writeBatching: boolean;
  topologyMode: 'assert' | 'passive';
  delayUnitMs: number;
  eventsMaxAge: string;
  eventsMaxBytes: number;
  tls: { ca?: Buffer[]; cert?: Buffer; key?: Buffer } | undefined;
  logLevel: string;
  logBodies: boolean;
  managementUrl: string | undefined;
  otlpEndpoint: string | undefined;
  otelServiceName: string | undefined;
}

/** Maps the parsed common keys to their settings (TLS files are read here). */
export function brokerSettings(e: z.infer<z.ZodObject<typeof brokerEnvShape>>): BrokerSettings {
  return {
    rabbitmqUrl: e.RABBITMQ_URL,
    prefix: e.GW_PREFIX,
    heartbeatS: e.HEARTBEAT_S,
    writeBatching: e.AMQP_WRITE_BATCHING === 'true',
    topologyMode: e.TOPOLOGY_MODE,
    delayUnitMs: e.DELAY_UNIT_MS,
    eventsMaxAge: e.EVENTS_MAX_AGE,
    eventsMaxBytes: e.EVENTS_MAX_BYTES,
    tls: readTls(e),
    logLevel: e.LOG_LEVEL,
    logBodies: e.LOG_BODIES === 'true',
    managementUrl: e.RABBITMQ_MANAGEMENT_URL,
    otlpEndpoint: e.OTEL_EXPORTER_OTLP_ENDPOINT,
    otelServiceName: e.OTEL_SERVICE_NAME,
  };
}
