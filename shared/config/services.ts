import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { SERVICE_NAME_PATTERN } from '../topology/names.ts';

/** Request headers that reach the downstream unless a service overrides the list. */
export const DEFAULT_FORWARD_REQUEST_HEADERS = Object.freeze([
  'accept',
  'accept-language',
  'content-type',
  'content-language',
  'if-match',
  'if-none-match',
  'if-modified-since',
  'if-unmodified-since',
  'user-agent',
]);

/** Response headers that travel back to the client unless a service overrides the list. */
export const DEFAULT_FORWARD_RESPONSE_HEADERS = Object.freeze([
  'content-type',
  'content-language',
  'content-disposition',
  'cache-control',
  'etag',
  'last-modified',
  'expires',
  'retry-after',
  'location',
  'link',
]);

/** Header names the gateway owns or that are hop-by-hop: never forwarded whatever a list says. */
export const NEVER_FORWARDED_HEADERS: ReadonlySet<string> = new Set([
  'host', 'connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade',
  'content-length', 'content-encoding', 'authorization', 'cookie', 'set-cookie', 'idempotency-key',
  'traceparent', 'tracestate', 'prefer', 'x-request-id', 'cc', 'bcc', 'user-id', 'gw-delay-ms', 'gw-not-before', 'gw-priority',
]);

const headerList = z
  .array(z.string().regex(/^[a-z0-9!#$%&'*+.^_`|~-]+$/, 'lower-case HTTP header name'))
  .refine((list) => list.every((h) => !NEVER_FORWARDED_HEADERS.has(h) && !h.startsWith('x-gw-')), {
    message: 'lists a header the gateway owns or that is hop-by-hop',
  });

/** One downstream service, as configured in the services file. */
export const serviceSchema = z
  .strictObject({
    /** Base URL of the downstream (`http(s)://host:port[/base]`); the forwarded path is appended. */
    url: z.url({ protocol: /^https?$/ }),
    /** Upper bound of one downstream call; the message's remaining deadline can only shorten it. @default 10000 */
    timeoutMs: z.number().int().positive().max(600_000).default(10_000),
    /** undici pool size per service: at least `rpc.prefetch + work.prefetch` (docs/adr/1402). @default 128 */
    connections: z.number().int().positive().max(4096).default(128),
    /** Largest downstream response body the dequeuer accepts (bytes). @default 10 MiB */
    maxResponseBytes: z.number().int().positive().max(100 * 1024 * 1024).default(10 * 1024 * 1024),
    /** Sync request queue (`<prefix>.<svc>.rpc`). */
    rpc: z
      .strictObject({
        /**
         * Unacked sync requests per dequeuer. 64 (was 32): with 64 clients on one dequeuer, 32 left half
         * the requests waiting in the queue and cost ~1.5x CPU per request in every process (docs/adr/1402).
         * @default 64
         */
        prefetch: z.number().int().min(1).max(2000).default(64),
        /** Queue bound (ready messages); beyond it publishes are rejected → 503. @default 1000 */
        maxLength: z.number().int().positive().default(1000),
      })
      .prefault({}),
    /** Async job queue (`<prefix>.<svc>.work`). */
    work: z
      .strictObject({
        /** Unacked jobs per dequeuer. @default 20 */
        prefetch: z.number().int().min(1).max(2000).default(20),
        /** Queue bound (ready messages); beyond it publishes are rejected → 503. @default 50000 */
        maxLength: z.number().int().positive().default(50_000),
        /**
         * Delayed jobs (`Gw-Delay-Ms`, `Gw-Not-Before`) of this service not yet due, over every tenant
         * and replica; beyond it 503 `GW_ERR_DELAYED_BACKLOG_FULL`. @default work.maxLength
         */
        delayedMaxLength: z.number().int().positive().optional(),
        /** Quorum-queue delivery limit: crash-loop safety net (not the retry policy). @default 10 */
        deliveryLimit: z.number().int().min(1).max(1000).default(10),
        /**
         * Normal-priority lanes: each a work queue; a job's lane is derived from its tenant, and the
         * dequeuer serves the lanes round-robin (docs/adr/1700-fair-lanes-priority-pacing.md). @default 4
         */
        lanes: z.number().int().min(1).max(32).default(4),
        /**
         * Share of job starts kept for normal jobs while high-priority ones wait (0 to 0.5): 0.1 = at
         * least one normal start after every 9 high ones. @default 0.1
         */
        normalMinShare: z.number().min(0.01).max(0.5).default(0.1),
        /**
         * In-flight jobs of one tenant per dequeuer, as a share of `prefetch`, for tenants the
         * tenants file gives no `maxConcurrency`. @default 0.8
         */
        tenantShare: z.number().min(0.05).max(1).default(0.8),
        /** Adaptive (AIMD) limit on in-flight downstream calls of this service's jobs. */
        pacing: z
          .strictObject({
            /** Lowest limit; the highest is `prefetch`. @default 1 */
            floor: z.number().int().min(1).max(2000).default(1),
            /** Factor the limit is multiplied by on 429, 503, a timeout or a connection error. @default 0.9 */
            decrease: z.number().min(0.1).max(0.99).default(0.9),
            /** Longest pause a downstream's `Retry-After` can impose on the whole service (ms). @default 60000 */
            maxPauseMs: z.number().int().min(0).max(3_600_000).default(60_000),
          })
          .prefault({}),
      })
      .prefault({}),
    /** Dead-letter queue bound. @default 100000 */
    dlqMaxLength: z.number().int().positive().default(100_000),
    retry: z
      .strictObject({
        /** Attempts including the first. @default 5 */
        maxAttempts: z.number().int().min(1).max(100).default(5),
        /** Backoff base (ms): delay = random(0, min(cap, base·2^(attempt-1))). @default 200 */
        baseMs: z.number().int().positive().default(200),
        /** Backoff cap (ms). @default 30000 */
        capMs: z.number().int().positive().default(30_000),
        /**
         * Backoff base after a network error (connection refused or reset): the delay is drawn from
         * [½, 1] · min(cap, base·2^(attempt-1)), so 5 attempts span at least 15 s, a downstream restart.
         * @default 2000
         */
        networkBaseMs: z.number().int().positive().default(2000),
        /** Downstream statuses that are retried (network errors and timeouts always are). */
        retryableStatus: z.array(z.number().int().min(100).max(599)).default([408, 429, 500, 502, 503, 504]),
      })
      .prefault({}),
    breaker: z
      .strictObject({
        /** Calls in the rolling window before the breaker may open. @default 10 */
        volumeThreshold: z.number().int().min(1).default(10),
        /** Failure percentage that opens the breaker. @default 50 */
        errorThresholdPercentage: z.number().min(1).max(100).default(50),
        /** Time open before a half-open probe (ms). @default 5000 */
        resetTimeoutMs: z.number().int().positive().default(5000),
        /** Rolling statistics window (ms). @default 10000 */
        rollingWindowMs: z.number().int().positive().default(10_000),
        /**
         * Consecutive connect failures (refused, unreachable: nothing listens) that open the breaker at
         * once, whatever the rolling window says: after healthy traffic the percentage needs as many
         * failures as there were successes. 0 = off. @default 5
         */
        networkFailureStreak: z.number().int().min(0).default(5),
      })
      .prefault({}),
    /** Request headers forwarded downstream (lower case). */
    forwardRequestHeaders: headerList.default([...DEFAULT_FORWARD_REQUEST_HEADERS]),
    /** Response headers returned to the client (lower case). */
    forwardResponseHeaders: headerList.default([...DEFAULT_FORWARD_RESPONSE_HEADERS]),
  });

export type ServiceConfig = z.infer<typeof serviceSchema>;

export const servicesFileSchema = z.strictObject({
  services: z
    .record(z.string().regex(SERVICE_NAME_PATTERN, 'service names are [a-z0-9-], at most 63 characters'), serviceSchema)
    .refine((s) => Object.keys(s).length > 0, { message: 'at least one service' }),
});

/** Validated, frozen services map (name → settings). */
export type Services = Readonly<Record<string, Readonly<ServiceConfig>>>;

/** Thrown when configuration is invalid; lists every bad key. */
export class ConfigError extends Error {
  constructor(source: string, issues: readonly string[]) {
    super(`invalid configuration in ${source}:\n  - ${issues.join('\n  - ')}`);
    this.name = 'ConfigError';
  }
}

export function formatZodIssues(error: z.ZodError): string[] {
  return error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
}

/** Parses a services document (already JSON-decoded). */
export function parseServices(doc: unknown, source = 'services'): Services {
  const parsed = servicesFileSchema.safeParse(doc);
  if (!parsed.success) throw new ConfigError(source, formatZodIssues(parsed.error));
  const out: Record<string, Readonly<ServiceConfig>> = {};
  for (const [name, svc] of Object.entries(parsed.data.services)) out[name] = deepFreeze(svc);
  return Object.freeze(out);
}

/** The environment variables {@link loadServices} reads (documented in docs/configuration.md). */
export const SERVICES_ENV_KEYS = ['SERVICES_FILE', 'SERVICES_JSON'] as const;

/** Reads services from `SERVICES_JSON` (inline) or `SERVICES_FILE` (path), else `fallbackFile`. */
export function loadServices(env: NodeJS.ProcessEnv, fallbackFile = 'config/services.json'): Services {
  if (env.SERVICES_JSON) return parseServices(parseJson(env.SERVICES_JSON, 'SERVICES_JSON'), 'SERVICES_JSON');
  const file = env.SERVICES_FILE ?? fallbackFile;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`SERVICES_FILE (${file})`, [`cannot read: ${(err as Error).message}`]);
  }
  return parseServices(parseJson(text, file), file);
}

function parseJson(text: string, source: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new ConfigError(source, [`not valid JSON: ${(err as Error).message}`]);
  }
}

export function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value) && !ArrayBuffer.isView(value)) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
