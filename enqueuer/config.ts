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
  /** Redis for the job store and idempotency keys (several replicas); unset = in-memory. @default unset */
  REDIS_URL: z.string().regex(/^rediss?:\/\//, 'must start with redis:// or rediss://').optional(),
  /** Prefix of every Redis key. @default <GW_PREFIX>: */
  REDIS_KEY_PREFIX: z.string().regex(/^[A-Za-z0-9:._-]{1,64}$/).optional(),
  /** Jobs the in-memory store keeps at most (least recently used evicted first). @default 100000 */
  JOB_STORE_MAX_JOBS: envInt(100, 10_000_000, 100_000),
  /** How long a finished job stays readable (ms). @default 86400000 (24 h) */
  JOB_TTL_MS: envInt(1000, 30 * 86_400_000, 86_400_000),
  /** How long an unfinished job is kept after its last event (ms). @default 604800000 (7 d) */
  JOB_ACTIVE_TTL_MS: envInt(1000, 90 * 86_400_000, 7 * 86_400_000),
  /** Largest `limit` of `GET /v1/jobs`. @default 100 */
  JOBS_LIST_MAX_LIMIT: envInt(1, 1000, 100),
  /** Lifetime of an Idempotency-Key's stored answer (ms). @default 86400000 (24 h) */
  IDEMPOTENCY_TTL_MS: envInt(100, 30 * 86_400_000, 86_400_000),
  /** Idempotency keys the in-memory store keeps at most. @default 100000 */
  IDEMPOTENCY_MAX_KEYS: envInt(100, 10_000_000, 100_000),
  /** How long a duplicate waits for the original request still in flight before 409 (ms). @default 10000 */
  IDEMPOTENCY_WAIT_MS: envInt(0, 600_000, 10_000),
  /** Period of the expiry sweeper of the in-memory stores (ms). @default 60000 */
  SWEEP_INTERVAL_MS: envInt(100, 3_600_000, 60_000),
  /** Concurrent server-sent-event streams per replica; beyond it 429. @default 1000 */
  SSE_MAX_CONNECTIONS: envInt(0, 100_000, 1000),
  /** Heartbeat comment period on SSE streams (ms). @default 15000 */
  SSE_HEARTBEAT_MS: envInt(100, 600_000, 15_000),
  /** Bound of each replica's event queue (messages; oldest dropped beyond it). @default 100000 */
  EVENTS_QUEUE_MAX_LENGTH: envInt(100, 10_000_000, 100_000),
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
  logBodies: boolean;
  services: Services;
  bodyLimitBytes: number;
  defaultWaitMs: number;
  maxWaitMs: number;
  replyChannels: number;
  publishTimeoutMs: number;
  publishWindow: number;
  shutdownGraceMs: number;
  redisUrl: string | undefined;
  redisKeyPrefix: string;
  jobStoreMaxJobs: number;
  jobTtlMs: number;
  jobActiveTtlMs: number;
  jobsListMaxLimit: number;
  idempotencyTtlMs: number;
  idempotencyMaxKeys: number;
  idempotencyWaitMs: number;
  sweepIntervalMs: number;
  sseMaxConnections: number;
  sseHeartbeatMs: number;
  eventsQueueMaxLength: number;
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
    logBodies: e.LOG_BODIES === 'true',
    services: loadServices(env),
    bodyLimitBytes: e.BODY_LIMIT_BYTES,
    defaultWaitMs: Math.min(e.DEFAULT_WAIT_MS, e.MAX_WAIT_MS),
    maxWaitMs: e.MAX_WAIT_MS,
    replyChannels: e.REPLY_CHANNELS,
    publishTimeoutMs: e.PUBLISH_TIMEOUT_MS,
    publishWindow: e.PUBLISH_WINDOW,
    shutdownGraceMs: e.SHUTDOWN_GRACE_MS,
    redisUrl: e.REDIS_URL,
    redisKeyPrefix: e.REDIS_KEY_PREFIX ?? `${e.GW_PREFIX}:`,
    jobStoreMaxJobs: e.JOB_STORE_MAX_JOBS,
    jobTtlMs: e.JOB_TTL_MS,
    jobActiveTtlMs: e.JOB_ACTIVE_TTL_MS,
    jobsListMaxLimit: e.JOBS_LIST_MAX_LIMIT,
    idempotencyTtlMs: e.IDEMPOTENCY_TTL_MS,
    idempotencyMaxKeys: e.IDEMPOTENCY_MAX_KEYS,
    idempotencyWaitMs: e.IDEMPOTENCY_WAIT_MS,
    sweepIntervalMs: e.SWEEP_INTERVAL_MS,
    sseMaxConnections: e.SSE_MAX_CONNECTIONS,
    sseHeartbeatMs: e.SSE_HEARTBEAT_MS,
    eventsQueueMaxLength: e.EVENTS_QUEUE_MAX_LENGTH,
    dlqOpTimeoutMs: e.DLQ_OP_TIMEOUT_MS,
    dlqMaxScan: e.DLQ_MAX_SCAN,
  });
}

/** Config for tests: defaults plus overrides, no environment. */
export function testEnqueuerConfig(overrides: Partial<EnqueuerConfig> & { services: Services }): EnqueuerConfig {
  return { ...loadEnqueuerConfig({ SERVICES_JSON: JSON.stringify({ services: { placeholder: { url: 'http://127.0.0.1:1' } } }) }), ...overrides };
}
