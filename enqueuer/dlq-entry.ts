import type { Message, Options } from 'amqplib';
import { HEADER } from '../shared/envelope.ts';
import { FAILURE_CODE } from '../shared/errors.ts';
import type { JobEvent } from '../shared/events.ts';

/** Header a rotation stamps on the copies it puts back, so it can tell when it has come full circle. */
export const ROTATION_HEADER = 'gw-dlq-rotation';

/** One dead-lettered job as the DLQ API shows it. Nothing internal (queue names) leaks. */
export interface DeadLetterEntry {
  /** Job id (AMQP `messageId`), or null for a message without one. */
  jobId: string | null;
  tenant: string | null;
  /** Attempts recorded on the message (`gw-attempt`); crash redeliveries that ended in `delivery_limit` come on top. */
  attempts: number | null;
  /** Why the broker dead-lettered it: `rejected` (spent or permanent failure) or `delivery_limit` (crash loop). */
  reason: string | null;
  /** How many times it was dead-lettered (sum of the non-`expired` `x-death` counts; > 1 after replays that failed again on 3.x). */
  deaths: number;
  /** Error of the attempt before the last (the last one's is in the job's events/status). */
  lastError: string | null;
  /** ISO times. */
  enqueuedAt: string | null;
  firstFailedAt: string | null;
  lastFailedAt: string | null;
  request: { method: string | null; path: string | null; contentType: string | null; bodyBytes: number };
}

type Headers = Record<string, unknown>;

/** An AMQP timestamp as amqplib hands it over (`{ '!': 'timestamp', value }`, a number or a Date), in epoch ms. */
export function timestampMs(value: unknown): number | undefined {
  if (value instanceof Date) return value.getTime();
  if (typeof value === 'number') return value * 1000;
  if (value && typeof value === 'object' && typeof (value as { value?: unknown }).value === 'number') return (value as { value: number }).value * 1000;
  return undefined;
}

const iso = (ms: number | undefined): string | null => (ms === undefined || !Number.isFinite(ms) ? null : new Date(ms).toISOString());
const text = (v: unknown): string | null => (typeof v === 'string' ? v : Buffer.isBuffer(v) ? v.toString('utf8') : null);
const num = (v: unknown): number | undefined => (typeof v === 'number' ? v : typeof v === 'bigint' ? Number(v) : undefined);

/** Reads the entry view of a DLQ message: our `gw-*` headers joined with the broker's `x-death`. */
export function toEntry(msg: Pick<Message, 'content' | 'properties'>): DeadLetterEntry {
  const h = (msg.properties.headers ?? {}) as Headers;
  // x-death is most recent first; a rotated copy carries it as an ordinary header, read the same way.
  // `expired` records are the delay levels' TTL hops of the last retry, not failures.
  const deaths = (Array.isArray(h['x-death']) ? (h['x-death'] as Array<Record<string, unknown>>) : []).filter((d) => d.reason !== 'expired');
  const times = deaths.map((d) => timestampMs(d.time)).filter((t): t is number => t !== undefined);
  const firstFailed = num(h[HEADER.firstFailedAt]) ?? (times.length ? Math.min(...times) : undefined);
  const headers = parseJsonObject(h[HEADER.headers]);
  return {
    jobId: text(msg.properties.messageId),
    tenant: text(h[HEADER.tenant]),
    attempts: num(h[HEADER.attempt]) ?? null,
    reason: text(deaths[0]?.reason) ?? text(h['x-first-death-reason']),
    deaths: deaths.reduce((sum, d) => sum + (num(d.count) ?? 1), 0),
    lastError: text(h[HEADER.lastError]),
    enqueuedAt: iso(num(h[HEADER.enqueuedAt])),
    firstFailedAt: iso(firstFailed),
    lastFailedAt: iso(times.length ? Math.max(...times) : undefined),
    request: {
      method: text(h[HEADER.method]),
      path: text(h[HEADER.path]),
      contentType: text(msg.properties.contentType) ?? headers?.['content-type'] ?? null,
      bodyBytes: msg.content.length,
    },
  };
}

function parseJsonObject(v: unknown): Record<string, string> | undefined {
  const s = text(v);
  if (!s) return undefined;
  try {
    const o = JSON.parse(s) as unknown;
    return o && typeof o === 'object' && !Array.isArray(o) ? (o as Record<string, string>) : undefined;
  } catch {
    return undefined;
  }
}

const PROPERTY_KEYS = ['contentType', 'contentEncoding', 'deliveryMode', 'priority', 'correlationId', 'replyTo', 'expiration', 'messageId', 'timestamp', 'type', 'appId'] as const;

/** Broker-owned headers a copy must not carry back into a work queue. */
const DEATH_HEADERS = ['x-death', 'x-first-death-exchange', 'x-first-death-queue', 'x-first-death-reason', 'x-last-death-exchange', 'x-last-death-queue', 'x-last-death-reason'];

/**
 * Publish options for a copy of a DLQ message.
 * - `rotate`: back to the DLQ tail, everything kept (x-death included, as a client header) except
 *   the DLQ's own `x-delivery-count`, stamped with the rotation id.
 * - `replay`: to the work queue, without the broker's death headers (so a new death is recorded
 *   afresh), optionally with attempts reset to 1 and the service rewritten (a redirect).
 */
export function copyOptions(msg: Pick<Message, 'properties'>, mode: { rotate: string } | { replay: { resetAttempts: boolean; service?: string } }): Options.Publish {
  const p = msg.properties as unknown as Record<string, unknown>;
  const options: Record<string, unknown> = { mandatory: true, persistent: true };
  for (const key of PROPERTY_KEYS) if (p[key] !== undefined && p[key] !== null) options[key] = p[key];
  options.deliveryMode = 2;
  const headers: Headers = { ...((msg.properties.headers ?? {}) as Headers) };
  delete headers['x-delivery-count'];
  delete headers[ROTATION_HEADER];
  if ('rotate' in mode) {
    headers[ROTATION_HEADER] = mode.rotate;
  } else {
    for (const k of DEATH_HEADERS) delete headers[k];
    if (mode.replay.resetAttempts) {
      headers[HEADER.attempt] = 1;
      delete headers[HEADER.firstFailedAt];
    }
    if (mode.replay.service !== undefined) headers[HEADER.service] = mode.replay.service;
  }
  options.headers = headers;
  return options as Options.Publish;
}

/**
 * The `dead` transition of a job the broker dead-lettered by the work queue's delivery limit: its
 * worker died (killed, OOM, crash) while holding it on every delivery, so no dequeuer lived to
 * publish the transition. The enqueuer sees the dead-lettered message itself (its events queue is
 * bound to the dead-letter exchange) and derives the event from it. Anything else is undefined: a
 * `rejected` job's `dead` event comes from the dequeuer with the real error, and a DLQ rotation's
 * copy is not a new death (rotations use their own routing key; the header check guards copies
 * from an enqueuer that still rotated with the service key).
 *
 * `deliveryLimit` is the work queue's (from the same services configuration that declared it): the
 * last delivery counted attempt `gw-attempt + deliveryLimit`, so the event ranks after it.
 */
export function deliveryLimitDeath(msg: Pick<Message, 'content' | 'properties'>, service: string, deliveryLimit: number, now = Date.now()): JobEvent | undefined {
  const h = (msg.properties.headers ?? {}) as Headers;
  if (h[ROTATION_HEADER] !== undefined) return undefined;
  const entry = toEntry(msg);
  if (entry.reason !== 'delivery_limit' || !entry.jobId || !entry.tenant) return undefined;
  const attempt = (entry.attempts ?? 1) + deliveryLimit;
  const enqueuedAt = num(h[HEADER.enqueuedAt]);
  const requestId = text(h[HEADER.requestId]);
  const traceparent = text(h[HEADER.traceparent]);
  return {
    v: 1,
    kind: 'job',
    jobId: entry.jobId,
    tenant: entry.tenant,
    service,
    state: 'dead',
    attempt,
    at: now,
    ...(enqueuedAt === undefined ? {} : { enqueuedAt }),
    ...(requestId ? { requestId } : {}),
    ...(traceparent ? { traceparent } : {}),
    error: {
      code: FAILURE_CODE.delivery_limit,
      message: `the worker stopped while holding this job on ${deliveryLimit + 1} deliveries in a row; the broker dead-lettered it by the work queue's delivery limit`,
    },
  };
}
