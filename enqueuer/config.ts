import { z } from 'zod';
import { brokerEnvShape, envInt, parseEnv, readTls } from '../shared/config/env.ts';
import { deepFreeze, loadServices, type Services } from '../shared/config/services.ts';

/**
 * Largest body the enqueuer accepts. RabbitMQ 4.x refuses messages over 16 MiB (`max_message_size`)
 * by closing the channel, which would fail every other publish on it; leave room for headers.
 */
export const MAX_BODY_LIMIT_BYTES = 15 * 1024 * 1024;

const enqueuerEnvShape = {
  ...brokerEnvShape,
  /** HTTP port. @default 8080 */
  PORT: envInt(0, 65535, 8080),
  /** HTTP bind address. @default 0.0.0.0 */
  HOST: z.string().default('0.0.0.0'),
  /** Request body limit (bytes), at most 15 MiB. @default 1048576 */
  BODY_LIMIT_BYTES: envInt(0, MAX_BODY_LIMIT_BYTES, 1024 * 1024),
  /** Wait for a sync reply when the client sends no `Prefer: wait` (ms). @default 30000 */
  DEFAULT_WAIT_MS: envInt(100, 3_600_000, 30_000),
  /** Largest wait a client may ask for with `Prefer: wait=N` (ms). @default 120000 */
  MAX_WAIT_MS: envInt(100, 3_600_000, 120_000),
  /** Confirm channels, each with its own direct reply-to consumer. @default 4 */
  REPLY_CHANNELS: envInt(1, 64, 4),
  /** A publish not confirmed in this time answers 503 (ms). @default 5000 */
  PUBLISH_TIMEOUT_MS: envInt(100, 60_000, 5000),
  /** Unconfirmed publishes per channel before new ones get 503. @default 1024 */
  PUBLISH_WINDOW: envInt(1, 100_000, 1024),
  /** How long a stop waits for in-flight requests (ms). @default 10000 */
  SHUTDOWN_GRACE_MS: envInt(0, 600_000, 10_000),
  /** Upper bound of one DLQ browse/replay/discard (ms). @default 30000 */
  DLQ_OP_TIMEOUT_MS: envInt(1000, 600_000, 30_000),
  /** Largest DLQ (messages) the DLQ API operates on. @default 10000 */
  DLQ_MAX_SCAN: envInt(1, 1_000_000, 10_000),
};

/** Everything the enqueuer reads, validated and frozen. */
export interface EnqueuerConfig {
  port: number;
  host: string;
  rabbitmqUrl: string;
  prefix: string;
  heartbeatS: number;
  topologyMode: 'assert' | 'passive';
  delayUnitMs: number;
  tls: { ca?: Buffer[]; cert?: Buffer; key?: Buffer } | undefined;
  logLevel: string;
  services: Services;
  bodyLimitBytes: number;
  defaultWaitMs: number;
  maxWaitMs: number;
  replyChannels: number;
  publishTimeoutMs: number;
  publishWindow: number;
  shutdownGraceMs: number;
  dlqOpTimeoutMs: number;
  dlqMaxScan: number;
}

export function loadEnqueuerConfig(env: NodeJS.ProcessEnv): EnqueuerConfig {
  const e = parseEnv(enqueuerEnvShape, env, 'enqueuer environment');
  return deepFreeze({
    port: e.PORT,
    host: e.HOST,
    rabbitmqUrl: e.RABBITMQ_URL,
    prefix: e.GW_PREFIX,
    heartbeatS: e.HEARTBEAT_S,
    topologyMode: e.TOPOLOGY_MODE,
    delayUnitMs: e.DELAY_UNIT_MS,
    tls: readTls(e),
    logLevel: e.LOG_LEVEL,
    services: loadServices(env),
    bodyLimitBytes: e.BODY_LIMIT_BYTES,
    defaultWaitMs: Math.min(e.DEFAULT_WAIT_MS, e.MAX_WAIT_MS),
    maxWaitMs: e.MAX_WAIT_MS,
    replyChannels: e.REPLY_CHANNELS,
    publishTimeoutMs: e.PUBLISH_TIMEOUT_MS,
    publishWindow: e.PUBLISH_WINDOW,
    shutdownGraceMs: e.SHUTDOWN_GRACE_MS,
    dlqOpTimeoutMs: e.DLQ_OP_TIMEOUT_MS,
    dlqMaxScan: e.DLQ_MAX_SCAN,
  });
}

/** Config for tests: defaults plus overrides, no environment. */
export function testEnqueuerConfig(overrides: Partial<EnqueuerConfig> & { services: Services }): EnqueuerConfig {
  return { ...loadEnqueuerConfig({ SERVICES_JSON: JSON.stringify({ services: { placeholder: { url: 'http://127.0.0.1:1' } } }) }), ...overrides };
}
