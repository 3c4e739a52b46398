import type { Message, Options } from 'amqplib';
import { isErrorCode, type ErrorCode } from './errors.ts';

/**
 * Message contract v1. The AMQP body is the raw HTTP body; everything else rides in properties and
 * in headers the gateway owns (`gw-*`, never `x-*`: those belong to the broker). Client headers
 * travel only inside the single `gw-headers` JSON value, so none of them (CC, BCC, x-death,
 * user-id …) can become an AMQP header or property.
 */
export const ENVELOPE_VERSION = 1;

/**
 * Compact sync request, contract v2 (docs/adr/1403): the fields of a sync request packed into one
 * JSON header (`gw-sync`) beside `gw-v` and `gw-tenant` (the dequeuer's fair scheduler reads the
 * tenant before decoding). Async jobs stay v1: the DLQ API and replays read their headers one by one.
 * Dequeuers read both versions; enqueuers send v2 unless `SYNC_ENVELOPE_VERSION=1` (set it while
 * older dequeuers still consume, docs/operations.md, "Upgrading to compact sync messages").
 */
export const SYNC_ENVELOPE_VERSION = 2;
export type SyncEnvelopeVersion = 1 | 2;

export const HEADER = {
  version: 'gw-v',
  mode: 'gw-mode',
  service: 'gw-service',
  method: 'gw-method',
  path: 'gw-path',
  query: 'gw-query',
  headers: 'gw-headers',
  tenant: 'gw-tenant',
  requestId: 'gw-request-id',
  deadline: 'gw-deadline',
  attempt: 'gw-attempt',
  enqueuedAt: 'gw-enqueued-at',
  firstFailedAt: 'gw-first-failed-at',
  lastError: 'gw-last-error',
  traceparent: 'traceparent',
  tracestate: 'tracestate',
  status: 'gw-status',
  errorCode: 'gw-error-code',
  errorDetail: 'gw-error-detail',
  retryAfterS: 'gw-retry-after-s',
  priority: 'gw-priority',
  sync: 'gw-sync',
} as const;

/** `sync`: a caller waits on direct reply-to. `async`: a persistent job. */
export type Mode = 'sync' | 'async';

export interface RequestEnvelope {
  /** Job id = AMQP `messageId`; sent downstream as `Idempotency-Key`. */
  jobId: string;
  requestId: string;
  service: string;
  mode: Mode;
  method: string;
  /** Forwarded path, starting with `/`. */
  path: string;
  /** Raw query string without `?`, or ''. */
  query: string;
  /** Allow-listed request headers, lower-case names. */
  headers: Record<string, string>;
  tenant: string;
  /** Epoch ms after which nobody waits for the result (sync), if any. */
  deadline?: number;
  /** 1 on first publish, +1 on every retry copy. */
  attempt: number;
  /** Epoch ms of the first publish. */
  enqueuedAt: number;
  firstFailedAt?: number;
  lastError?: string;
  traceparent?: string;
  tracestate?: string;
  /** `high` for a job sent with `Gw-Priority: high` (absent = normal). */
  priority?: 'high';
  body: Buffer;
}

/** A message that does not follow the contract: permanent, never retried. */
export class EnvelopeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'EnvelopeError';
  }
}

export type PublishOptions = Options.Publish & { messageId: string };

/**
 * AMQP properties and headers of a request. A sync request carries only what its consumer reads
 * (docs/adr/1400): no `correlationId` (the reply is correlated by `messageId`, the job id), no
 * `type`/`appId`, no empty `gw-query`; amqplib encodes every field per message and the broker
 * parses them, so each one is CPU on both sides of the hot path. Async jobs keep them all (they are
 * stored, dead-lettered and shown by the DLQ API).
 */
export function encodeRequest(env: RequestEnvelope, extra: { replyTo?: string; expirationMs?: number; syncVersion?: SyncEnvelopeVersion } = {}): PublishOptions {
  const sync = env.mode === 'sync';
  // v2 has no place for what a sync request never has (a retry's attempt and errors, a priority): such a message stays v1.
  if (sync && extra.syncVersion === SYNC_ENVELOPE_VERSION && env.attempt === 1 && env.priority === undefined && env.firstFailedAt === undefined && env.lastError === undefined) {
    return encodeSyncV2(env, extra);
  }
  const headers: Record<string, unknown> = {
    [HEADER.version]: ENVELOPE_VERSION,
    [HEADER.mode]: env.mode,
    [HEADER.service]: env.service,
    [HEADER.method]: env.method,
    [HEADER.path]: env.path,
  };
  if (!sync || env.query) headers[HEADER.query] = env.query;
  headers[HEADER.headers] = JSON.stringify(env.headers);
  headers[HEADER.tenant] = env.tenant;
  headers[HEADER.requestId] = env.requestId;
  headers[HEADER.attempt] = env.attempt;
  headers[HEADER.enqueuedAt] = env.enqueuedAt;
  if (env.deadline !== undefined) headers[HEADER.deadline] = env.deadline;
  if (env.firstFailedAt !== undefined) headers[HEADER.firstFailedAt] = env.firstFailedAt;
  if (env.lastError !== undefined) headers[HEADER.lastError] = env.lastError.slice(0, 512);
  if (env.traceparent) headers[HEADER.traceparent] = env.traceparent;
  if (env.tracestate) headers[HEADER.tracestate] = env.tracestate;
  if (env.priority === 'high') headers[HEADER.priority] = 'high';
  const options: PublishOptions = sync
    ? { messageId: env.jobId, timestamp: Math.floor(env.enqueuedAt / 1000), persistent: false, headers }
    : {
      messageId: env.jobId,
      correlationId: env.jobId,
      timestamp: Math.floor(env.enqueuedAt / 1000),
      type: 'gw.request.v1',
      appId: 'gw-enqueuer',
      persistent: true,
      headers,
    };
  return withDelivery(options, env, extra);
}

/**
 * `gw-sync` is `[requestId, service, method, path, query, headers, enqueuedAt, deadline, traceparent,
 * tracestate]` (null for an absent optional). One JSON value where v1 has twelve header fields:
 * amqplib encodes (and decodes) one table entry instead of twelve, and the broker parses a
 * three-entry table (ADR 1403). A sync request is never retried, so its attempt is always 1.
 */
function encodeSyncV2(env: RequestEnvelope, extra: { replyTo?: string; expirationMs?: number }): PublishOptions {
  const fields = [env.requestId, env.service, env.method, env.path, env.query, env.headers, env.enqueuedAt, env.deadline ?? null, env.traceparent ?? null, env.tracestate ?? null];
  const options: PublishOptions = {
    messageId: env.jobId,
    persistent: false,
    headers: { [HEADER.version]: SYNC_ENVELOPE_VERSION, [HEADER.tenant]: env.tenant, [HEADER.sync]: JSON.stringify(fields) },
  };
  return withDelivery(options, env, extra);
}

/** The properties both versions set the same way: the forwarded content type, the reply address, the TTL. */
function withDelivery(options: PublishOptions, env: RequestEnvelope, extra: { replyTo?: string; expirationMs?: number }): PublishOptions {
  const contentType = env.headers['content-type'];
  if (contentType) options.contentType = contentType;
  if (extra.replyTo) options.replyTo = extra.replyTo;
  if (extra.expirationMs !== undefined) options.expiration = String(Math.max(1, Math.ceil(extra.expirationMs)));
  return options;
}

function badSync(what: string): never {
  throw new EnvelopeError(`bad ${HEADER.sync}: ${what}`);
}

function decodeSyncV2(msg: Message, h: Record<string, unknown>): RequestEnvelope {
  const jobId = str(msg.properties.messageId, 'messageId');
  const text = str(h[HEADER.sync], HEADER.sync);
  let f: unknown;
  try {
    f = JSON.parse(text);
  } catch {
    badSync('not JSON');
  }
  if (!Array.isArray(f) || f.length !== 10) badSync('not an array of 10');
  const [requestId, service, method, path, query, headers, enqueuedAt, deadline, traceparent, tracestate] = f as unknown[];
  if (typeof requestId !== 'string') badSync('requestId');
  if (typeof service !== 'string') badSync('service');
  if (typeof method !== 'string') badSync('method');
  if (typeof path !== 'string' || !path.startsWith('/')) badSync('path');
  if (typeof query !== 'string') badSync('query');
  if (!isStringRecord(headers)) badSync('headers');
  if (!Number.isSafeInteger(enqueuedAt) || (enqueuedAt as number) < 0) badSync('enqueuedAt');
  if (deadline !== null && (!Number.isSafeInteger(deadline) || (deadline as number) < 0)) badSync('deadline');
  if (traceparent !== null && typeof traceparent !== 'string') badSync('traceparent');
  if (tracestate !== null && typeof tracestate !== 'string') badSync('tracestate');
  const env: RequestEnvelope = {
    jobId,
    requestId: requestId as string,
    service: service as string,
    mode: 'sync',
    method: method as string,
    path: path as string,
    query: query as string,
    headers: headers as Record<string, string>,
    tenant: str(h[HEADER.tenant], HEADER.tenant),
    attempt: 1,
    enqueuedAt: enqueuedAt as number,
    body: msg.content,
  };
  if (deadline !== null) env.deadline = deadline as number;
  if (traceparent) env.traceparent = traceparent as string;
  if (tracestate) env.tracestate = tracestate as string;
  return env;
}

function isStringRecord(v: unknown): v is Record<string, string> {
  return !!v && typeof v === 'object' && !Array.isArray(v) && Object.values(v).every((x) => typeof x === 'string');
}

/** Reads contract v1 (every message) and v2 (compact sync requests). */
export function decodeRequest(msg: Message): RequestEnvelope {
  const p = msg.properties;
  const h = (p.headers ?? {}) as Record<string, unknown>;
  if (h[HEADER.version] === SYNC_ENVELOPE_VERSION) return decodeSyncV2(msg, h);
  if (h[HEADER.version] !== ENVELOPE_VERSION) throw new EnvelopeError(`unsupported envelope version ${String(h[HEADER.version])}`);
  const jobId = str(p.messageId, 'messageId');
  const mode = str(h[HEADER.mode], HEADER.mode);
  if (mode !== 'sync' && mode !== 'async') throw new EnvelopeError(`bad ${HEADER.mode}`);
  const path = str(h[HEADER.path], HEADER.path);
  if (!path.startsWith('/')) throw new EnvelopeError(`bad ${HEADER.path}`);
  let headers: unknown;
  try {
    headers = JSON.parse(str(h[HEADER.headers], HEADER.headers));
  } catch {
    throw new EnvelopeError(`bad ${HEADER.headers}`);
  }
  if (!isStringRecord(headers)) throw new EnvelopeError(`bad ${HEADER.headers}`);
  const env: RequestEnvelope = {
    jobId,
    requestId: str(h[HEADER.requestId], HEADER.requestId),
    service: str(h[HEADER.service], HEADER.service),
    mode,
    method: str(h[HEADER.method], HEADER.method),
    path,
    query: str(h[HEADER.query] ?? '', HEADER.query),
    headers: headers as Record<string, string>,
    tenant: str(h[HEADER.tenant], HEADER.tenant),
    attempt: int(h[HEADER.attempt], HEADER.attempt, 1),
    enqueuedAt: int(h[HEADER.enqueuedAt], HEADER.enqueuedAt, 0),
    body: msg.content,
  };
  if (h[HEADER.deadline] !== undefined) env.deadline = int(h[HEADER.deadline], HEADER.deadline, 0);
  if (h[HEADER.firstFailedAt] !== undefined) env.firstFailedAt = int(h[HEADER.firstFailedAt], HEADER.firstFailedAt, 0);
  if (typeof h[HEADER.lastError] === 'string') env.lastError = h[HEADER.lastError] as string;
  if (typeof h[HEADER.traceparent] === 'string') env.traceparent = h[HEADER.traceparent] as string;
  if (typeof h[HEADER.tracestate] === 'string') env.tracestate = h[HEADER.tracestate] as string;
  if (h[HEADER.priority] === 'high' || (Buffer.isBuffer(h[HEADER.priority]) && String(h[HEADER.priority]) === 'high')) env.priority = 'high';
  return env;
}

function str(v: unknown, name: string): string {
  if (typeof v === 'string') return v;
  if (Buffer.isBuffer(v)) return v.toString('utf8');
  throw new EnvelopeError(`missing or invalid ${name}`);
}

function int(v: unknown, name: string, min: number): number {
  const n = typeof v === 'number' ? v : typeof v === 'bigint' ? Number(v) : NaN;
  if (!Number.isSafeInteger(n) || n < min) throw new EnvelopeError(`missing or invalid ${name}`);
  return n;
}

/** What the dequeuer sends back on direct reply-to. */
export interface ReplyEnvelope {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
  /** Set when the gateway itself failed the request (breaker open, timeout …). */
  error?: { code: ErrorCode; detail?: string; retryAfterS?: number };
}

/** A reply carries its status, the forwarded headers (omitted when none) and a gateway error if any (docs/adr/1400). */
export function encodeReply(correlationId: string, reply: ReplyEnvelope): Options.Publish {
  const headers: Record<string, unknown> = { [HEADER.status]: reply.status };
  for (const _ in reply.headers) {
    headers[HEADER.headers] = JSON.stringify(reply.headers);
    break;
  }
  if (reply.error) {
    headers[HEADER.errorCode] = reply.error.code;
    if (reply.error.detail) headers[HEADER.errorDetail] = reply.error.detail.slice(0, 512);
    if (reply.error.retryAfterS !== undefined) headers[HEADER.retryAfterS] = reply.error.retryAfterS;
  }
  return { correlationId, headers };
}

export function decodeReply(msg: Message): ReplyEnvelope {
  const h = (msg.properties.headers ?? {}) as Record<string, unknown>;
  // Status 0 marks a reply that carries a gateway error instead of a downstream answer.
  const status = int(h[HEADER.status], HEADER.status, 0);
  let headers: Record<string, string>;
  try {
    headers = JSON.parse(str(h[HEADER.headers] ?? '{}', HEADER.headers)) as Record<string, string>;
  } catch {
    throw new EnvelopeError(`bad ${HEADER.headers}`);
  }
  const reply: ReplyEnvelope = { status, headers, body: msg.content };
  const code = h[HEADER.errorCode];
  if (code !== undefined) {
    const c = str(code, HEADER.errorCode);
    if (!isErrorCode(c)) throw new EnvelopeError(`unknown ${HEADER.errorCode} ${c}`);
    reply.error = { code: c };
    if (h[HEADER.errorDetail] !== undefined) reply.error.detail = str(h[HEADER.errorDetail], HEADER.errorDetail);
    if (typeof h[HEADER.retryAfterS] === 'number') reply.error.retryAfterS = h[HEADER.retryAfterS] as number;
  } else if (status < 100) {
    throw new EnvelopeError(`bad ${HEADER.status}`);
  }
  return reply;
}
