import { validateHeaderName, validateHeaderValue } from 'node:http';
import type { Response } from 'express';
import type { ServiceConfig } from '../../shared/config/services.ts';
import { failureCode, GatewayError } from '../../shared/errors.ts';
import { TERMINAL_STATES, type JobError, type JobEvent, type JobResult, type JobState } from '../../shared/events.ts';
import type { JobEventHub } from '../events/job-event-hub.ts';
import { sendAccepted } from '../http/views.ts';
import type { JobRecord } from './job-record.ts';
import type { JobStore } from './job-store.ts';

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

/**
 * The finished job's downstream answer (status, allow-listed headers, body) as if it had been a
 * sync call; a job that ended without an answer (timeouts, network) becomes the matching problem.
 */
export function sendJobResult(res: Response, job: { id: string; state: JobState; result?: JobResult; error?: JobError }, svc: Readonly<ServiceConfig>): void {
  if (!job.result) {
    // The job's own error code (one failure kind → code map, shared with the sync path).
    const code = job.error ? failureCode(job.error.code) : 'GW_ERR_DOWNSTREAM_UNAVAILABLE';
    throw new GatewayError(code, `job ${job.state}: ${job.error?.message ?? 'no answer'}`, { extra: { jobId: job.id, state: job.state } });
  }
  const headers = responseHeaders(job.result.headers, svc);
  res.status(job.result.status);
  for (const [name, value] of headers) res.setHeader(name, value);
  res.setHeader('content-location', `/v1/jobs/${job.id}`);
  if (job.result.bodyTruncated) res.setHeader('x-gw-body-truncated', 'true');
  res.end(Buffer.from(job.result.bodyBase64, 'base64'));
}

/**
 * Resolves with the job's terminal event, or undefined after `waitMs` or when the client goes away.
 * Subscribes before reading the store so a transition between the two is not missed.
 */
export async function waitForTerminal(hub: JobEventHub, store: JobStore, tenant: string, jobId: string, waitMs: number, res: Response): Promise<JobRecord | JobEvent | undefined> {
  let unsubscribe = (): void => {};
  let timer: NodeJS.Timeout | undefined;
  let onClose = (): void => {};
  const terminal = new Promise<JobEvent | undefined>((resolve) => {
    unsubscribe = hub.onJob(tenant, jobId, (e) => {
      if (TERMINAL_STATES.has(e.state)) resolve(e);
    });
    timer = setTimeout(() => resolve(undefined), waitMs);
    onClose = () => resolve(undefined);
    res.once('close', onClose);
  });
  try {
    const now = await store.get(tenant, jobId);
    if (now?.terminal) return now;
    return await terminal;
  } finally {
    unsubscribe();
    clearTimeout(timer);
    res.off('close', onClose);
  }
}

/**
 * Answers for a job: with `waitMs`, 200 with its result when it finishes within it, else 202 for the
 * same job; without, always 202 (also for a duplicate of a job that has finished since).
 */
export async function answerJob(
  res: Response,
  deps: { hub: JobEventHub; jobs: JobStore },
  record: JobRecord,
  waitMs: number | undefined,
  svc: Readonly<ServiceConfig>,
): Promise<void> {
  if (waitMs !== undefined && waitMs > 0) {
    if (record.terminal) return sendJobResult(res, record, svc);
    const done = await waitForTerminal(deps.hub, deps.jobs, record.tenant, record.id, waitMs, res);
    if (done) return sendJobResult(res, 'jobId' in done ? { ...done, id: done.jobId } : done, svc);
    record = (await deps.jobs.get(record.tenant, record.id)) ?? record;
  }
  sendAccepted(res, record);
}
