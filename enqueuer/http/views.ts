/**
 * The API's shapes: every body the enqueuer answers with (and every SSE event) is built here, by one
 * function per shape, from a domain record. One name for an id (`id`), ISO-8601 times, `attempts`,
 * one paging shape (`{ items, next }` plus a `Link: <…>; rel="next"` header), registry codes in a
 * job's error. The zod schemas are the contract: the OpenAPI document (enqueuer/http/openapi.ts) is
 * generated from them, and the contract test validates live answers against that document.
 */
import type { Response } from 'express';
import { z } from 'zod';
import { ERRORS, failureCode, type ErrorCode, type ProblemDetails } from '../../shared/errors.ts';
import { JOB_STATES, type JobEvent as DomainJobEvent, type JobError, type JobResult } from '../../shared/events.ts';
import type { DeadLetterEntry } from '../dlq-entry.ts';
import type { JobRecord } from '../jobs/job-record.ts';
import type { JobReply, Reply } from '../submit/types.ts';
import type { AuditEntry } from '../workbench/audit-trail.ts';

const ERROR_CODES = Object.keys(ERRORS) as [ErrorCode, ...ErrorCode[]];
const isoTime = z.iso.datetime({ offset: false }).describe('ISO-8601 UTC time');
const jobId = z.string().min(1).describe('job id (the AMQP message id; sent downstream as Idempotency-Key)');

export const JobErrorSchema = z
  .object({
    code: z.enum(ERROR_CODES).describe('registry code (see the error table)'),
    message: z.string(),
    status: z.number().int().optional().describe('downstream status, when the failure was an HTTP answer'),
  })
  .meta({ id: 'JobError', description: 'The latest failure of a job.' });

export const JobResultSchema = z
  .object({
    status: z.number().int(),
    headers: z.record(z.string(), z.string()),
    bodyBase64: z.string(),
    bodyTruncated: z.boolean(),
  })
  .meta({ id: 'JobResult', description: "The downstream's answer (body base64, cut at the dequeuer's MAX_RESULT_BYTES)." });

export const JobStateSchema = z.enum(JOB_STATES).meta({ id: 'JobState' });

export const JobSchema = z
  .object({
    id: jobId,
    service: z.string(),
    state: JobStateSchema,
    attempts: z.number().int().min(1).describe('attempts started so far (1-based)'),
    createdAt: isoTime,
    updatedAt: isoTime,
    startedAt: isoTime.optional(),
    finishedAt: isoTime.optional(),
    nextAttemptAt: isoTime.optional().describe('for `retrying`: when the next attempt is due'),
    requestId: z.string().optional(),
    error: JobErrorSchema.optional(),
    result: JobResultSchema.optional(),
  })
  .meta({ id: 'Job', description: 'An async job as its transitions left it.' });

export const JobEventSchema = z
  .object({
    id: jobId,
    service: z.string(),
    state: JobStateSchema,
    attempts: z.number().int().min(1),
    at: isoTime.describe('time of the transition'),
    replay: z.boolean().optional().describe('set when an operator replayed the job from the DLQ'),
    requestId: z.string().optional(),
    nextAttemptAt: isoTime.optional(),
    error: JobErrorSchema.optional(),
    result: JobResultSchema.optional(),
  })
  .meta({ id: 'JobEvent', description: 'One transition of a job (the `data` of an SSE event; the event name is the state).' });

export const DeadLetterSchema = z
  .object({
    id: jobId.nullable().describe('job id, null for a message without one'),
    attempts: z.number().int().nullable(),
    reason: z.string().nullable().describe('`rejected` (attempts spent or permanent failure) or `delivery_limit` (crash loop)'),
    deaths: z.number().int(),
    lastError: z.string().nullable().describe('error of the attempt before the last (the last one is in the job)'),
    enqueuedAt: isoTime.nullable(),
    firstFailedAt: isoTime.nullable(),
    lastFailedAt: isoTime.nullable().describe('second precision (x-death time)'),
    request: z.object({ method: z.string().nullable(), path: z.string().nullable(), contentType: z.string().nullable(), bodyBytes: z.number().int() }),
  })
  .meta({ id: 'DeadLetter', description: "One dead-lettered job of the caller's tenant." });

/** One page of a list: `next` is the cursor of the next page, null on the last one (also sent as `Link: rel="next"`). */
export function pageSchema<T extends z.ZodType>(item: T, id: string) {
  return z
    .object({
      items: z.array(item),
      next: z.string().nullable().describe('cursor of the next page (pass as `cursor`), null on the last page'),
      total: z.number().int().optional().describe('number of items over all pages, where known'),
    })
    .meta({ id, description: `A page of ${item.meta()?.id ?? 'items'}.` });
}

export const JobPageSchema = pageSchema(JobSchema, 'JobPage');
export const DeadLetterPageSchema = pageSchema(DeadLetterSchema, 'DeadLetterPage');

export const ReplayResultSchema = z
  .object({
    service: z.string(),
    replayed: z.array(z.string()),
    notFound: z.array(z.string()),
    dryRun: z.boolean(),
  })
  .meta({ id: 'ReplayResult' });

export const ProblemSchema = z
  .looseObject({
    type: z.string(),
    title: z.string(),
    status: z.number().int(),
    code: z.enum(ERROR_CODES),
    detail: z.string().optional(),
    instance: z.string().optional(),
    requestId: z.string().optional(),
  })
  .meta({ id: 'Problem', description: 'RFC 9457 problem details (application/problem+json).' });

export type Job = z.infer<typeof JobSchema>;
export type JobEventView = z.infer<typeof JobEventSchema>;
export type DeadLetter = z.infer<typeof DeadLetterSchema>;
export type Page<T> = { items: T[]; next: string | null; total?: number };
export type Problem = ProblemDetails;

const iso = (ms: number): string => new Date(ms).toISOString();

function errorView(e: JobError): z.infer<typeof JobErrorSchema> {
  return { code: failureCode(e.code), message: e.message, ...(e.status === undefined ? {} : { status: e.status }) };
}

function resultView(r: JobResult): z.infer<typeof JobResultSchema> {
  return { status: r.status, headers: r.headers, bodyBase64: r.bodyBase64, bodyTruncated: r.bodyTruncated };
}

/** A job record as the API shows it. */
export function jobView(r: JobRecord): Job {
  const v: Job = { id: r.id, service: r.service, state: r.state, attempts: r.attempt, createdAt: iso(r.createdAt), updatedAt: iso(r.updatedAt) };
  if (r.startedAt !== undefined) v.startedAt = iso(r.startedAt);
  if (r.finishedAt !== undefined) v.finishedAt = iso(r.finishedAt);
  if (r.nextAttemptAt !== undefined) v.nextAttemptAt = iso(r.nextAttemptAt);
  if (r.requestId !== undefined) v.requestId = r.requestId;
  if (r.error) v.error = errorView(r.error);
  if (r.result) v.result = resultView(r.result);
  return v;
}

/** The fields a transition's view is built from: an event's, or the record's latest transition. */
interface Transition {
  id: string;
  service: string;
  state: JobEventView['state'];
  attempt: number;
  at: number;
  replay?: boolean | undefined;
  requestId?: string | undefined;
  nextAttemptAt?: number | undefined;
  error?: JobError | undefined;
  result?: JobResult | undefined;
}

function transitionView(t: Transition): JobEventView {
  const v: JobEventView = { id: t.id, service: t.service, state: t.state, attempts: t.attempt, at: iso(t.at) };
  if (t.replay) v.replay = true;
  if (t.requestId !== undefined) v.requestId = t.requestId;
  if (t.nextAttemptAt !== undefined) v.nextAttemptAt = iso(t.nextAttemptAt);
  if (t.error) v.error = errorView(t.error);
  if (t.result) v.result = resultView(t.result);
  return v;
}

/** A transition as SSE streams show it. */
export function jobEventView(e: DomainJobEvent): JobEventView {
  return transitionView({ ...e, id: e.jobId });
}

/** A job's current state as the first event of its stream (the transition that left it there). */
export function currentStateEvent(r: JobRecord): JobEventView {
  return transitionView({ id: r.id, service: r.service, state: r.state, attempt: r.attempt, at: r.updatedAt, requestId: r.requestId, nextAttemptAt: r.nextAttemptAt, error: r.error, result: r.result });
}

/** A DLQ entry as the API shows it. */
export function deadLetterView(e: DeadLetterEntry): DeadLetter {
  return {
    id: e.jobId,
    attempts: e.attempts,
    reason: e.reason,
    deaths: e.deaths,
    lastError: e.lastError,
    enqueuedAt: e.enqueuedAt,
    firstFailedAt: e.firstFailedAt,
    lastFailedAt: e.lastFailedAt,
    request: e.request,
  };
}

/**
 * Writes a page: the body `{ items, next }` and, when there is a next page, `Link: <url>; rel="next"`
 * built from the route's path and query with `cursor` replaced.
 */
export function sendPage<T>(res: Response, page: Page<T>, link: { path: string; query: Record<string, string | undefined> }): void {
  if (page.next !== null) {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(link.query)) if (v !== undefined && k !== 'cursor') params.set(k, v);
    params.set('cursor', page.next);
    res.setHeader('link', `<${link.path}?${params}>; rel="next"`);
  }
  res.json(page);
}

/** `202 Accepted` for a job: `Location`, and the job's view as the body. */
export function sendAccepted(res: Response, record: JobRecord): void {
  res.status(202);
  res.setHeader('location', `/v1/jobs/${record.id}`);
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify(jobView(record)));
}

/** A downstream's answer as it came (sync reply, or a replayed one): its status, allow-listed headers and body. */
export function sendReply(res: Response, reply: Reply): void {
  res.status(reply.status);
  for (const [name, value] of reply.headers) res.setHeader(name, value);
  res.end(reply.body);
}

/** A finished job's answer (Prefer: respond-async, wait=N): as {@link sendReply}, pointing at the job. */
export function sendJobReply(res: Response, reply: JobReply): void {
  res.status(reply.status);
  for (const [name, value] of reply.headers) res.setHeader(name, value);
  res.setHeader('content-location', `/v1/jobs/${reply.jobId}`);
  if (reply.bodyTruncated) res.setHeader('x-gw-body-truncated', 'true');
  res.end(reply.body);
}

// ---- Dashboard and DLQ workbench (docs/adr/1600-dashboard-dlq-workbench-cancel.md) ----

export const DlqGroupSchema = z
  .object({
    id: z.string().describe('opaque group id (pass as `group` to replays and discards)'),
    status: z.number().int().nullable().describe('downstream HTTP status of the final failure, when it was an answer'),
    code: z.enum(ERROR_CODES).nullable().describe('registry code of the final failure'),
    reason: z.string().nullable().describe('why the broker dead-lettered it: `rejected` or `delivery_limit`'),
    count: z.number().int(),
    firstSeenAt: isoTime.nullable().describe('earliest first failure of the group'),
    lastSeenAt: isoTime.nullable().describe('latest failure of the group'),
    ids: z.array(z.string()).describe('job ids of the group, DLQ order (at most 1000)'),
    idsTruncated: z.boolean(),
  })
  .meta({ id: 'DlqGroup', description: "The tenant's dead letters of one service that failed the same way." });

export const DlqGroupPageSchema = pageSchema(DlqGroupSchema, 'DlqGroupPage');

export const DlqOperationResultSchema = z
  .object({
    service: z.string(),
    target: z.string().describe('the service the jobs go to (a redirect names another one)'),
    action: z.enum(['replay', 'discard']),
    dryRun: z.boolean(),
    ids: z.array(z.string()).describe('replayed or discarded ids (with dryRun: what would be)'),
    notFound: z.array(z.string()),
    auditId: z.string().nullable().describe('the audit entry recorded (null for a dry run)'),
  })
  .meta({ id: 'DlqOperationResult' });

export const AuditEntrySchema = z
  .object({
    id: z.string(),
    at: isoTime,
    keyId: z.string().describe('the API key that acted (never the key itself)'),
    requestId: z.string(),
    action: z.enum(['replay', 'discard', 'cancel']),
    service: z.string(),
    target: z.string().optional(),
    ids: z.array(z.string()).describe('job ids acted on (at most 1000; `count` is the full number)'),
    count: z.number().int(),
    reason: z.string().optional(),
    group: z.string().optional(),
    ratePerS: z.number().optional(),
    resetAttempts: z.boolean().optional(),
    notFound: z.number().int().optional(),
  })
  .meta({ id: 'AuditEntry', description: 'One operator action of the tenant: who (key id), what (ids, counts), when, why.' });

export const AuditPageSchema = pageSchema(AuditEntrySchema, 'AuditPage');

export const JobRequestSchema = z
  .object({
    method: z.string(),
    path: z.string(),
    query: z.string().describe('raw query string, without `?`'),
    headers: z.record(z.string(), z.string()).describe('the allow-listed headers that were forwarded'),
    bodyBytes: z.number().int().describe('the body is not kept, only its size'),
    notBefore: isoTime.optional().describe('a delayed job: when it is due'),
  })
  .meta({ id: 'JobRequest', description: 'The request of a job as it was forwarded (kept by the replica that accepted it; shared through Redis when configured).' });

export const TimelineSchema = z
  .object({ id: jobId, items: z.array(JobEventSchema).describe('transitions, oldest first (at most 64)'), request: JobRequestSchema.optional() })
  .meta({ id: 'JobTimeline', description: "A job's transitions: attempts, times, errors, retry gaps." });

const queueDepth = z.object({ ready: z.number().int().describe('messages ready (passive declare)'), consumers: z.number().int() });

export const OverviewSchema = z
  .object({
    at: isoTime,
    services: z.array(
      z.object({
        service: z.string(),
        queues: z.object({ work: queueDepth, rpc: queueDepth, dlq: queueDepth, delayed: z.number().int().describe('delayed jobs not yet due (all tenants)') }),
        running: z.number().int().describe("the tenant's jobs delivered and not finished (unacked), from their events"),
        active: z.number().int().describe("the tenant's unfinished jobs"),
        oldestCreatedAt: isoTime.nullable().describe("creation of the tenant's oldest unfinished job"),
        breaker: z.object({ state: z.enum(['closed', 'half-open', 'open', 'unknown']), retryAfterS: z.number().int().nullable().describe('seconds until half-open') }),
        perMinute: z.object({ minutes: z.array(isoTime).describe('start of each of the last 15 minutes, oldest first'), accepted: z.array(z.number().int()), succeeded: z.array(z.number().int()), failed: z.array(z.number().int()), dead: z.array(z.number().int()), cancelled: z.array(z.number().int()) }),
      }),
    ),
  })
  .meta({ id: 'Overview', description: "Per service the key may use: queue depths (every tenant's), the tenant's activity per minute, breaker." });

export type AuditView = z.infer<typeof AuditEntrySchema>;

/** An audit entry as the API shows it (the tenant is the caller's; not repeated). */
export function auditView(e: AuditEntry): AuditView {
  const v: AuditView = { id: e.id, at: iso(e.at), keyId: e.keyId, requestId: e.requestId, action: e.action, service: e.service, ids: e.ids, count: e.count };
  if (e.target !== undefined) v.target = e.target;
  if (e.reason !== undefined) v.reason = e.reason;
  if (e.group !== undefined) v.group = e.group;
  if (e.ratePerS !== undefined) v.ratePerS = e.ratePerS;
  if (e.resetAttempts !== undefined) v.resetAttempts = e.resetAttempts;
  if (e.notFound !== undefined) v.notFound = e.notFound;
  return v;
}
