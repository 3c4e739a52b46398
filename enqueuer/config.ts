import { z } from 'zod';
import type { SyncEnvelopeVersion } from '../shared/envelope.ts';
import { brokerEnvShape, brokerSettings, envInt, parseEnv, type BrokerSettings } from '../shared/config/env.ts';
import { ConfigError, deepFreeze, loadServices, type Services } from '../shared/config/services.ts';
import { loadKeysFile, type KeysFile, type TenantLimits } from './security/api-keys.ts';

/**
 * Largest body the enqueuer accepts. RabbitMQ 4.x refuses messages over 16 MiB (`max_message_size`)
 * by closing the channel, which would fail every other publish on it; leave room for headers.
 */
export const MAX_BODY_LIMIT_BYTES = 15 * 1024 * 1024;

export const enqueuerEnvShape = {
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
  /** Confirm channels, each with its own direct reply-to consumer (1: measured best, docs/adr/1402). @default 1 */
  REPLY_CHANNELS: envInt(1, 64, 1),
  /** Message contract of sync requests: 2 (compact, docs/adr/1403) or 1 while dequeuers older than v2 still consume (docs/operations.md). @default 2 */
  SYNC_ENVELOPE_VERSION: z.enum(['1', '2']).default('2'),
  /** A publish not confirmed in this time answers 503 (ms). @default 5000 */
  PUBLISH_TIMEOUT_MS: envInt(100, 60_000, 5000),
  /** Unconfirmed publishes per channel before new ones get 503. @default 1024 */
  PUBLISH_WINDOW: envInt(1, 100_000, 1024),
  /** How long a stop waits for in-flight requests (ms). @default 10000 */
  SHUTDOWN_GRACE_MS: envInt(0, 600_000, 10_000),
  /**
   * On stop, how long `/readyz` answers 503 while requests are still served, before the listener
   * closes (ms): a load balancer probing every 5 s with 2 failures to eject needs 10 s to notice.
   * @default 10000
   */
  DRAIN_DELAY_MS: envInt(0, 600_000, 10_000),
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
  /** Bytes of stored answers the in-memory idempotency store keeps at most (LRU evicted). @default 67108864 (64 MiB) */
  IDEMPOTENCY_MAX_BYTES: envInt(1024 * 1024, 64 * 1024 * 1024 * 1024, 64 * 1024 * 1024),
  /** Bytes of job records (results included) the in-memory job store keeps at most (LRU evicted). @default 268435456 (256 MiB) */
  JOB_STORE_MAX_BYTES: envInt(1024 * 1024, 64 * 1024 * 1024 * 1024, 256 * 1024 * 1024),
  /** How long a duplicate waits for the original request still in flight before 409 (ms). @default 10000 */
  IDEMPOTENCY_WAIT_MS: envInt(0, 600_000, 10_000),
  /** Period of the expiry sweeper of the in-memory stores (ms). @default 60000 */
  SWEEP_INTERVAL_MS: envInt(100, 3_600_000, 60_000),
  /** Concurrent server-sent-event streams per replica; beyond it 429. @default 1000 */
  SSE_MAX_CONNECTIONS: envInt(0, 100_000, 1000),
  /** Concurrent server-sent-event streams of one tenant per replica; beyond it 429. @default 100 */
  SSE_MAX_PER_TENANT: envInt(1, 100_000, 100),
  /** Heartbeat comment period on SSE streams (ms). @default 15000 */
  SSE_HEARTBEAT_MS: envInt(100, 600_000, 15_000),
  /** Bytes of recent events-stream messages each replica keeps for SSE `Last-Event-ID` resumes (older ids are read from the stream). @default 33554432 (32 MiB) */
  EVENTS_REPLAY_MAX_BYTES: envInt(64 * 1024, 16 * 1024 * 1024 * 1024, 32 * 1024 * 1024),
  /** SSE resumes older than the replay log that may read the events stream at once per replica; beyond it 503. @default 8 */
  EVENTS_CATCHUP_MAX: envInt(1, 1000, 8),
  /** Upper bound of one DLQ browse/replay/discard (ms). @default 30000 */
  DLQ_OP_TIMEOUT_MS: envInt(1000, 600_000, 30_000),
  /** Largest DLQ (messages) the DLQ API operates on. @default 10000 */
  DLQ_MAX_SCAN: envInt(1, 1_000_000, 10_000),
  /** DLQ operations waiting (running included) per replica; beyond it 429. @default 64 */
  DLQ_MAX_WAITING: envInt(1, 100_000, 64),
  /** DLQ operations one tenant may have waiting (running included) per replica; beyond it 429. @default 8 */
  DLQ_MAX_WAITING_PER_TENANT: envInt(1, 100_000, 8),
  /**
   * `api-keys`: every /v1 request needs `Authorization: Bearer <key>`. `none`: development mode, every
   * request is tenant `default` (logged as a warning at start). Default: `api-keys` when
   * API_KEYS_FILE/API_KEYS_JSON is set, else `none`.
   */
  AUTH_MODE: z.enum(['api-keys', 'none']).optional(),
  /** Failed authentications per source IP per minute before that IP gets 429. @default 20 */
  AUTH_FAILURES_PER_MIN: envInt(1, 100_000, 20),
  /** Default tenant token refill (requests/s); 0 = no rate limit. @default 0 */
  RATE_LIMIT_PER_S: z.coerce.number().min(0).max(1_000_000).default(0),
  /** Default tenant bucket size. @default 2 × RATE_LIMIT_PER_S (at least 1) */
  RATE_LIMIT_BURST: z.coerce.number().int().min(1).max(10_000_000).optional(),
  /** Default per-key (client) refill within a tenant; 0 = off. @default 0 */
  CLIENT_RATE_LIMIT_PER_S: z.coerce.number().min(0).max(1_000_000).default(0),
  /** Default per-key bucket size. @default 2 × CLIENT_RATE_LIMIT_PER_S */
  CLIENT_RATE_LIMIT_BURST: z.coerce.number().int().min(1).max(10_000_000).optional(),
  /** Delayed jobs of one tenant per service not yet due (over every replica); beyond it 503. @default 10000 */
  MAX_DELAYED_PER_TENANT: envInt(1, 100_000_000, 10_000),
  /** Sync requests one tenant may have waiting at once (per replica). @default 1000 */
  MAX_INFLIGHT_PER_TENANT: envInt(1, 1_000_000, 1000),
  /** Share of successful requests (status < 400) logged at info with duration, status and ids, 0 to 1; failures are always logged. @default 1 */
  LOG_REQUEST_SAMPLE: z.coerce.number().min(0).max(1).default(1),
  /** Largest request head (request line + headers) in bytes → 431 beyond. @default 16384 */
  MAX_HEADER_BYTES: envInt(1024, 1024 * 1024, 16 * 1024),
  /** Most request header fields → 431 beyond. @default 100 */
  MAX_HEADER_COUNT: envInt(8, 10_000, 100),
  /** Longest request target (path + query) in bytes → 414 beyond. @default 8192 */
  MAX_URL_BYTES: envInt(64, 1024 * 1024, 8192),
  /** Time to receive a whole request (head and body) → 408 beyond; bounds slow-drip bodies (ms). @default 30000 */
  REQUEST_TIMEOUT_MS: envInt(1000, 600_000, 30_000),
  /** Time to receive the request head → 408 beyond; at most REQUEST_TIMEOUT_MS (ms). @default 10000 */
  HEADERS_TIMEOUT_MS: envInt(500, 600_000, 10_000),
};

/** Rate and concurrency limits of one tenant, defaults filled in. */
export interface ResolvedLimits {
  /** 0 = off. */
  ratePerS: number;
  burst: number;
  /** 0 = off. */
  clientRatePerS: number;
  clientBurst: number;
  maxInflight: number;
}

/** Authentication and quotas. */
export interface SecurityConfig {
  authMode: 'api-keys' | 'none';
  keys: KeysFile | undefined;
  defaults: ResolvedLimits;
  authFailuresPerMin: number;
  redisUrl: string | undefined;
}

/** Fills a tenant's limits from the defaults. */
export function limitsFor(security: SecurityConfig, tenant: string): ResolvedLimits {
  const own: TenantLimits | undefined = security.keys?.tenants[tenant];
  if (!own) return security.defaults;
  const ratePerS = own.ratePerS ?? security.defaults.ratePerS;
  const clientRatePerS = own.clientRatePerS ?? security.defaults.clientRatePerS;
  return {
    ratePerS,
    burst: own.burst ?? (own.ratePerS === undefined ? security.defaults.burst : Math.max(1, Math.ceil(ratePerS * 2))),
    clientRatePerS,
    clientBurst: own.clientBurst ?? (own.clientRatePerS === undefined ? security.defaults.clientBurst : Math.max(1, Math.ceil(clientRatePerS * 2))),
    maxInflight: own.maxInflight ?? security.defaults.maxInflight,
  };
}

/** Everything the enqueuer reads, validated and frozen. */
export interface EnqueuerConfig extends BrokerSettings {
  port: number;
  host: string;
  services: Services;
  bodyLimitBytes: number;
  defaultWaitMs: number;
  maxWaitMs: number;
  replyChannels: number;
  syncEnvelopeVersion: SyncEnvelopeVersion;
  publishTimeoutMs: number;
  publishWindow: number;
  shutdownGraceMs: number;
  /** Not-ready time before the listener closes on stop (ms). */
  drainDelayMs: number;
  redisUrl: string | undefined;
  redisKeyPrefix: string;
  jobStoreMaxJobs: number;
  jobTtlMs: number;
  jobActiveTtlMs: number;
  jobsListMaxLimit: number;
  idempotencyTtlMs: number;
  idempotencyMaxKeys: number;
  idempotencyMaxBytes: number;
  jobStoreMaxBytes: number;
  idempotencyWaitMs: number;
  sweepIntervalMs: number;
  sseMaxConnections: number;
  sseMaxPerTenant: number;
  sseHeartbeatMs: number;
  eventsReplayMaxBytes: number;
  eventsCatchUpMax: number;
  dlqOpTimeoutMs: number;
  dlqMaxScan: number;
  maxDelayedPerTenant: number;
  dlqMaxWaiting: number;
  dlqMaxWaitingPerTenant: number;
  /** Share of successful requests logged at info (LOG_REQUEST_SAMPLE). */
  logRequestSample: number;
  security: SecurityConfig;
  /** Input limits of the HTTP server. */
  limits: { maxHeaderBytes: number; maxHeaderCount: number; maxUrlBytes: number; requestTimeoutMs: number; headersTimeoutMs: number };
}

export function loadEnqueuerConfig(env: NodeJS.ProcessEnv): EnqueuerConfig {
  const e = parseEnv(enqueuerEnvShape, env, 'enqueuer environment');
  const keys = loadKeysFile(env);
  const authMode = e.AUTH_MODE ?? (keys ? 'api-keys' : 'none');
  if (authMode === 'api-keys' && !keys) throw new ConfigError('enqueuer environment', ['AUTH_MODE=api-keys needs API_KEYS_FILE or API_KEYS_JSON']);
  if (authMode === 'none' && keys) throw new ConfigError('enqueuer environment', ['AUTH_MODE=none contradicts the configured API keys; unset one of them']);
  return deepFreeze({
    port: e.PORT,
    host: e.HOST,
    ...brokerSettings(e),
    services: loadServices(env),
    bodyLimitBytes: e.BODY_LIMIT_BYTES,
    defaultWaitMs: Math.min(e.DEFAULT_WAIT_MS, e.MAX_WAIT_MS),
    maxWaitMs: e.MAX_WAIT_MS,
    replyChannels: e.REPLY_CHANNELS,
    syncEnvelopeVersion: e.SYNC_ENVELOPE_VERSION === '1' ? 1 : 2,
    publishTimeoutMs: e.PUBLISH_TIMEOUT_MS,
    publishWindow: e.PUBLISH_WINDOW,
    shutdownGraceMs: e.SHUTDOWN_GRACE_MS,
    drainDelayMs: e.DRAIN_DELAY_MS,
    redisUrl: e.REDIS_URL,
    redisKeyPrefix: e.REDIS_KEY_PREFIX ?? `${e.GW_PREFIX}:`,
    jobStoreMaxJobs: e.JOB_STORE_MAX_JOBS,
    jobTtlMs: e.JOB_TTL_MS,
    jobActiveTtlMs: e.JOB_ACTIVE_TTL_MS,
    jobsListMaxLimit: e.JOBS_LIST_MAX_LIMIT,
    idempotencyTtlMs: e.IDEMPOTENCY_TTL_MS,
    idempotencyMaxKeys: e.IDEMPOTENCY_MAX_KEYS,
    idempotencyMaxBytes: e.IDEMPOTENCY_MAX_BYTES,
    jobStoreMaxBytes: e.JOB_STORE_MAX_BYTES,
    idempotencyWaitMs: e.IDEMPOTENCY_WAIT_MS,
    sweepIntervalMs: e.SWEEP_INTERVAL_MS,
    sseMaxConnections: e.SSE_MAX_CONNECTIONS,
    sseMaxPerTenant: Math.min(e.SSE_MAX_PER_TENANT, Math.max(1, e.SSE_MAX_CONNECTIONS)),
    sseHeartbeatMs: e.SSE_HEARTBEAT_MS,
    eventsReplayMaxBytes: e.EVENTS_REPLAY_MAX_BYTES,
    eventsCatchUpMax: e.EVENTS_CATCHUP_MAX,
    dlqOpTimeoutMs: e.DLQ_OP_TIMEOUT_MS,
    dlqMaxScan: e.DLQ_MAX_SCAN,
    maxDelayedPerTenant: e.MAX_DELAYED_PER_TENANT,
    dlqMaxWaiting: e.DLQ_MAX_WAITING,
    dlqMaxWaitingPerTenant: Math.min(e.DLQ_MAX_WAITING_PER_TENANT, e.DLQ_MAX_WAITING),
    logRequestSample: e.LOG_REQUEST_SAMPLE,
    security: {
      authMode,
      keys,
      defaults: {
        ratePerS: e.RATE_LIMIT_PER_S,
        burst: e.RATE_LIMIT_BURST ?? Math.max(1, Math.ceil(e.RATE_LIMIT_PER_S * 2)),
        clientRatePerS: e.CLIENT_RATE_LIMIT_PER_S,
        clientBurst: e.CLIENT_RATE_LIMIT_BURST ?? Math.max(1, Math.ceil(e.CLIENT_RATE_LIMIT_PER_S * 2)),
        maxInflight: e.MAX_INFLIGHT_PER_TENANT,
      },
      authFailuresPerMin: e.AUTH_FAILURES_PER_MIN,
      redisUrl: e.REDIS_URL,
    },
    limits: {
      maxHeaderBytes: e.MAX_HEADER_BYTES,
      maxHeaderCount: e.MAX_HEADER_COUNT,
      maxUrlBytes: e.MAX_URL_BYTES,
      requestTimeoutMs: e.REQUEST_TIMEOUT_MS,
      headersTimeoutMs: Math.min(e.HEADERS_TIMEOUT_MS, e.REQUEST_TIMEOUT_MS),
    },
  });
}

/** Config for tests: defaults plus overrides, no environment. */
export function testEnqueuerConfig(overrides: Partial<EnqueuerConfig> & { services: Services }): EnqueuerConfig {
  return { ...loadEnqueuerConfig({ SERVICES_JSON: JSON.stringify({ services: { placeholder: { url: 'http://127.0.0.1:1' } } }) }), ...overrides };
}
