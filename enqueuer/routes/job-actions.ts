import express, { Router, type Request } from 'express';
import type { Logger } from 'pino';
import { z } from 'zod';
import { GatewayError } from '../../shared/errors.ts';
import type { JobEvent } from '../../shared/events.ts';
import { bearer, json, pathParams, problems, V1_PROBLEMS, type RouteDoc } from '../http/route-docs.ts';
import { jobEventView, JobSchema, jobView, TimelineSchema } from '../http/views.ts';
import type { DelayedBacklog } from '../jobs/delayed-backlog.ts';
import { applyPatch, eventPatch } from '../jobs/job-record.ts';
import type { JobStore } from '../jobs/job-store.ts';
import type { Guard } from '../security/guard.ts';
import type { JobEvents } from '../events/job-events.ts';
import type { Workbench } from '../workbench/workbench.ts';

export interface JobActionRouteDeps {
  jobs: JobStore;
  delayed: DelayedBacklog;
  workbench: Workbench;
  logger: Logger;
  /** Records a job event here and tells the other replicas. */
  jobEvents: Pick<JobEvents, 'record'>;
  guard: Guard;
}

/** States a job can be cancelled in: not yet handed to a downstream (or waiting for its next attempt). */
export const CANCELLABLE = new Set(['queued', 'retrying']);

const cancelBody = z.strictObject({ reason: z.string().trim().min(1).max(500).optional().describe('why, for the audit trail') }).meta({ id: 'CancelRequest' });

/** `POST /v1/jobs/:id/cancel` and `GET /v1/jobs/:id/timeline`. */
export function jobActionsRouter(deps: JobActionRouteDeps): Router {
  const router = Router();
  const { jobs, guard } = deps;

  async function jobOf(req: Request) {
    const job = await jobs.get(req.principal.tenant, req.params.id as string);
    if (!job || !guard.mayUse(req.principal, job.service)) throw new GatewayError('GW_ERR_JOB_NOT_FOUND');
    return job;
  }

  /**
   * Cancel: the cancellation is confirmed on the stream every dequeuer reads before anything else
   * (a dequeuer that meets the job later acks it without a call), then the job ends `cancelled`, its
   * delayed reservation is given back and the audit trail records who did it.
   */
  router.post('/v1/jobs/:id/cancel', express.json({ limit: '16kb', strict: true }), async (req, res) => {
    const parsed = cancelBody.safeParse(req.body ?? {});
    if (!parsed.success) throw new GatewayError('GW_ERR_BAD_REQUEST', parsed.error.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`).join('; '));
    const job = await jobOf(req);
    if (!CANCELLABLE.has(job.state)) throw new GatewayError('GW_ERR_JOB_NOT_CANCELLABLE', `the job is ${job.state}`);
    const tenant = req.principal.tenant;
    const at = Date.now();
    await deps.workbench.publishCancellation({ v: 1, jobId: job.id, tenant, service: job.service, at, keyId: req.principal.keyId });
    const event: JobEvent = { v: 1, kind: 'job', jobId: job.id, tenant, service: job.service, state: 'cancelled', attempt: job.attempt, at, ...(job.requestId ? { requestId: job.requestId } : {}) };
    deps.jobEvents.record(event);
    await deps.delayed.release(job.service, tenant, job.id).catch((err: unknown) => deps.logger.warn({ err, jobId: job.id, tenant }, 'delayed reservation of a cancelled job not released; it expires at its due time'));
    const entry = await deps.workbench.audit.record({ tenant, keyId: req.principal.keyId, requestId: req.id, action: 'cancel', service: job.service, ids: [job.id], ...(parsed.data.reason ? { reason: parsed.data.reason } : {}) });
    deps.logger.info({ audit: 'job.cancel', auditId: entry.id, jobId: job.id, tenant, service: job.service, keyId: req.principal.keyId, requestId: req.id, was: job.state }, 'job cancelled');
    res.json(jobView(applyPatch(job, eventPatch(event)) ?? job));
  });

  router.get('/v1/jobs/:id/timeline', async (req, res) => {
    const job = await jobOf(req);
    const [events, request] = await Promise.all([deps.workbench.timeline.get(req.principal.tenant, job.id), deps.workbench.timeline.request(req.principal.tenant, job.id)]);
    res.setHeader('cache-control', 'no-store');
    const { notBefore, ...forwarded } = request ?? {};
    res.json({ id: job.id, items: events.map(jobEventView), ...(request ? { request: { ...forwarded, ...(notBefore === undefined ? {} : { notBefore: new Date(notBefore).toISOString() }) } } : {}) });
  });

  return router;
}

const jobIdParam = pathParams({ id: z.string().describe('job id') });

/** OpenAPI entries of this router (collected by enqueuer/http/openapi.ts). */
export const jobActionRouteDocs: RouteDoc[] = [
  {
    method: 'post', path: '/v1/jobs/{id}/cancel', tags: ['jobs'], summary: 'Cancel a queued or retrying (delayed included) job: it is never sent downstream and ends `cancelled`; audited', security: bearer,
    request: { params: jobIdParam, body: { content: { 'application/json': { schema: cancelBody } }, required: false } },
    responses: { 200: json(JobSchema, 'the cancelled job'), ...problems(...V1_PROBLEMS, 404, 409) },
  },
  {
    method: 'get', path: '/v1/jobs/{id}/timeline', tags: ['jobs'], summary: "A job's transitions, oldest first (attempts, times, errors, retry gaps), and its request as forwarded (no body)", security: bearer,
    request: { params: jobIdParam },
    responses: { 200: json(TimelineSchema, 'the timeline'), ...problems(...V1_PROBLEMS, 404) },
  },
];
