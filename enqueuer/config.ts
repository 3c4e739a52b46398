import { z } from 'zod';
import { brokerEnvShape, envInt, parseEnv, readTls } from '../shared/config/env.ts';
import { ConfigError, deepFreeze, loadServices, type Services } from '../shared/config/services.ts';
import { loadKeysFile, type KeysFile, type TenantLimits } from './security/api-keys.ts';

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
  /** Sync requests one tenant may have waiting at once (per replica). @default 1000 */
  MAX_INFLIGHT_PER_TENANT: envInt(1, 1_000_000, 1000),
  /** Redis for shared rate-limit buckets (all replicas); unset = buckets per replica. */
  REDIS_URL: z.string().regex(/^rediss?:\/\//).optional(),
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
