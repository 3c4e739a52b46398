import { validateHeaderName, validateHeaderValue } from 'node:http';
import type { ServiceConfig } from '../../shared/config/services.ts';
import type { ReplyEnvelope } from '../../shared/envelope.ts';
import { failureCode, GatewayError } from '../../shared/errors.ts';
import { TERMINAL_STATES, type JobError, type JobEvent, type JobResult, type JobState } from '../../shared/events.ts';
import type { JobEventHub } from '../events/job-event-hub.ts';
import type { JobRecord } from '../jobs/job-record.ts';
import type { JobStore } from '../jobs/job-store.ts';
import type { Accepted, ClientConnection, JobReply, Reply } from './types.ts';

/** The allow-listed, valid response headers of a downstream answer; an invalid one is a 502. */
export function responseHeaders(headers: Record<string, string>, svc: Readonly<ServiceConfig>): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const [name, value] of Object.entries(headers)) {
    if (!svc.forwardResponseHeaders.includes(name)) continue;
    try {
      validateHeaderName(name);
      validateHeaderValue(name, value);
    } catch {
      throw new GatewayError('GW_ERR_DOWNSTREAM_BAD_RESPONSE', `downstream header ${JSON.stringify(name.slice(0, 64))} is invalid`);
    }
    out.push([name, value]);
  }
  return out;
}

/** Throws the gateway error a reply carries; a hostile status is a 502. */
export function assertReplyUsable(reply: ReplyEnvelope): void {
  if (reply.error) {
    throw new GatewayError(reply.error.code, reply.error.detail, reply.error.retryAfterS === undefined ? {} : { retryAfterS: reply.error.retryAfterS });
  }
  if (!Number.isInteger(reply.status) || reply.status < 200 || reply.status > 599) {
    throw new GatewayError('GW_ERR_DOWNSTREAM_BAD_RESPONSE', `downstream status ${reply.status}`);
  }
}

/** The downstream's answer to a sync request, checked; or the gateway error it carries. */
export function syncReply(reply: ReplyEnvelope, svc: Readonly<ServiceConfig>): Reply {
  assertReplyUsable(reply);
  return { status: reply.status, headers: responseHeaders(reply.headers, svc), body: reply.body };
}

/**
 * The finished job's downstream answer (status, allow-listed headers, body) as if it had been a
 * sync call; a job that ended without an answer (timeouts, network) throws the matching problem.
 */
export function jobReply(job: { id: string; state: JobState; result?: JobResult; error?: JobError }, svc: Readonly<ServiceConfig>): JobReply {
  if (!job.result) {
    // The job's own error code (one failure kind → code map, shared with the sync path).
    const code = job.error ? failureCode(job.error.code) : 'GW_ERR_DOWNSTREAM_UNAVAILABLE';
    throw new GatewayError(code, `job ${job.state}: ${job.error?.message ?? 'no answer'}`, { extra: { jobId: job.id, state: job.state } });
  }
  const headers = responseHeaders(job.result.headers, svc);
  return { jobId: job.id, status: job.result.status, headers, body: Buffer.from(job.result.bodyBase64, 'base64'), bodyTruncated: job.result.bodyTruncated };
}

/**
 * Resolves with the job's terminal event, or undefined after `waitMs` or when the client goes away.
 * Subscribes before reading the store so a transition between the two is not missed.
 */
export async function waitForTerminal(o: { hub: JobEventHub; jobs: JobStore; tenant: string; jobId: string; waitMs: number; client: ClientConnection }): Promise<JobRecord | JobEvent | undefined> {
  let unsubscribe = (): void => {};
  let timer: NodeJS.Timeout | undefined;
  let onClose = (): void => {};
  const terminal = new Promise<JobEvent | undefined>((resolve) => {
    unsubscribe = o.hub.onJob(o.tenant, o.jobId, (e) => {
      if (TERMINAL_STATES.has(e.state)) resolve(e);
    });
    timer = setTimeout(() => resolve(undefined), o.waitMs);
    onClose = () => resolve(undefined);
    o.client.once('close', onClose);
  });
  try {
    const now = await o.jobs.get(o.tenant, o.jobId);
    if (now?.terminal) return now;
    return await terminal;
  } finally {
    unsubscribe();
    clearTimeout(timer);
    o.client.off('close', onClose);
  }
}

/**
 * The answer for a job: with `waitMs`, its result when it finishes within it, else the same job as
 * it stands then (202); without, always the job (also for a duplicate of a job that has finished since).
 */
export async function answerJob(o: { hub: JobEventHub; jobs: JobStore; record: JobRecord; waitMs: number | undefined; svc: Readonly<ServiceConfig>; client: ClientConnection }): Promise<Accepted> {
  let record = o.record;
  if (o.waitMs !== undefined && o.waitMs > 0) {
    if (record.terminal) return { kind: 'finished', reply: jobReply(record, o.svc) };
    const done = await waitForTerminal({ hub: o.hub, jobs: o.jobs, tenant: record.tenant, jobId: record.id, waitMs: o.waitMs, client: o.client });
    if (done) return { kind: 'finished', reply: jobReply('jobId' in done ? { ...done, id: done.jobId } : done, o.svc) };
    record = (await o.jobs.get(record.tenant, record.id)) ?? record;
  }
  return { kind: 'accepted', job: record };
}
