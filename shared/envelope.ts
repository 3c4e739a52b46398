import type { Message, Options } from 'amqplib';
import { isErrorCode, type ErrorCode } from './errors.ts';

/**
 * Message contract v1. The AMQP body is the raw HTTP body; everything else rides in properties and
 * in headers the gateway owns (`gw-*`, never `x-*`: those belong to the broker). Client headers
 * travel only inside the single `gw-headers` JSON value, so none of them (CC, BCC, x-death,
 * user-id …) can become an AMQP header or property.
 */
export const ENVELOPE_VERSION = 1;

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
export function encodeRequest(env: RequestEnvelope, extra: { replyTo?: string; expirationMs?: number } = {}): PublishOptions {
  const sync = env.mode === 'sync';
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
  const contentType = env.headers['content-type'];
  if (contentType) options.contentType = contentType;
  if (extra.replyTo) options.replyTo = extra.replyTo;
  if (extra.expirationMs !== undefined) options.expiration = String(Math.max(1, Math.ceil(extra.expirationMs)));
  return options;
}

export function decodeRequest(msg: Message): RequestEnvelope {
  const p = msg.properties;
  const h = (p.headers ?? {}) as Record<string, unknown>;
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
  if (!headers || typeof headers !== 'object' || Array.isArray(headers) || !Object.values(headers).every((v) => typeof v === 'string')) {
    throw new EnvelopeError(`bad ${HEADER.headers}`);
  }
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
