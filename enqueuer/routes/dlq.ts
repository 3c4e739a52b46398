import express, { Router, type Request } from 'express';
import type { Logger } from 'pino';
import { z } from 'zod';
import { GatewayError } from '../../shared/errors.ts';
import type { EnqueuerConfig } from '../config.ts';
import type { DeadLetters } from '../dlq.ts';
import type { JobEvents } from '../events/job-events.ts';
import { bearer, json, linkHeader, pathParams, problems, V1_PROBLEMS, type RouteDoc } from '../http/route-docs.ts';
import { DeadLetterPageSchema, deadLetterView, ReplayResultSchema, sendPage } from '../http/views.ts';
import type { EnqueuerMetrics } from '../metrics.ts';
import { requireServiceAccess } from '../http/service-access.ts';
import type { Guard } from '../security/guard.ts';
import type { Workbench } from '../workbench/workbench.ts';

/** A tenant (the authenticated one, `req.principal`) sees and touches only its own entries. */
export interface DlqRouteDeps {
  config: Pick<EnqueuerConfig, 'services'>;
  deadLetters: DeadLetters;
  logger: Logger;
  metrics: EnqueuerMetrics;
  /** Records a job event here and tells the other replicas (a replayed job is `queued` again). */
  jobEvents: Pick<JobEvents, 'record'>;
  /** The key's service allow-list applies to every DLQ route (403). */
  guard: Guard;
  /** Replays and discards go to the audit trail. */
  workbench: Workbench;
}

const DEFAULT_LIMIT = 50;
const MAX_LIMIT = 500;

const replayBody = z
  .strictObject({
    ids: z.array(z.string().min(1).max(200)).min(1).max(1000).optional(),
    all: z.boolean().optional(),
    resetAttempts: z.boolean().optional(),
    dryRun: z.boolean().optional(),
  })
  .refine((b) => (b.all === true) !== (b.ids !== undefined), { message: 'give either ids or all: true' });

/** Opaque cursor: the position in the tenant's DLQ listing. */
export function encodeCursor(offset: number): string {
  return Buffer.from(`o:${offset}`).toString('base64url');
}

export function decodeCursor(cursor: unknown): number {
  if (cursor === undefined) return 0;
  const m = typeof cursor === 'string' ? /^o:(\d{1,9})$/.exec(Buffer.from(cursor, 'base64url').toString('utf8')) : null;
  if (!m) throw new GatewayError('GW_ERR_BAD_REQUEST', 'invalid cursor');
  return Number(m[1]);
}

function parseLimit(value: unknown): number {
  if (value === undefined) return DEFAULT_LIMIT;
  if (typeof value !== 'string' || !/^\d{1,4}$/.test(value) || Number(value) < 1 || Number(value) > MAX_LIMIT) {
    throw new GatewayError('GW_ERR_BAD_REQUEST', `limit must be an integer from 1 to ${MAX_LIMIT}`);
  }
  return Number(value);
}

/** `GET /v1/dlq/:service`, `POST /v1/dlq/:service/replay`, `DELETE /v1/dlq/:service/:id`. */
export function dlqRouter(deps: DlqRouteDeps): Router {
  const router = Router();
  const { config, deadLetters } = deps;
  const serviceOf = (req: Request): string => {
    const service = req.params.service as string;
    // Unknown services are refused before any broker name is derived from the path (R9).
    if (!Object.hasOwn(config.services, service)) throw new GatewayError('GW_ERR_SERVICE_UNKNOWN', `no service named ${JSON.stringify(service.slice(0, 64))}`);
    return service;
  };

  const access = requireServiceAccess(deps.guard);

  router.get('/v1/dlq/:service', access, async (req, res) => {
    const service = serviceOf(req);
    const offset = decodeCursor(req.query.cursor);
    const limit = parseLimit(req.query.limit);
    const page = await deadLetters.browse(service, req.principal.tenant, { offset, limit });
    sendPage(
      res,
      { items: page.entries.map(deadLetterView), next: page.nextOffset === undefined ? null : encodeCursor(page.nextOffset), total: page.total },
      { path: `/v1/dlq/${service}`, query: { limit: String(limit) } },
    );
  });

  router.post('/v1/dlq/:service/replay', access, express.json({ limit: '256kb', strict: true }), async (req, res) => {
    const service = serviceOf(req);
    const parsed = replayBody.safeParse(req.body ?? {});
    if (!parsed.success) throw new GatewayError('GW_ERR_BAD_REQUEST', parsed.error.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`).join('; '));
    const tenant = req.principal.tenant;
    // `replay` is the one way a job leaves a terminal state in the status view; recorded before its copy goes out.
    const onReplay = (jobId: string): void => {
      deps.metrics.jobsReplayed.labels(service).inc();
      deps.jobEvents.record({ v: 1, kind: 'job', jobId, tenant, service, state: 'queued', attempt: 1, at: Date.now(), replay: true, requestId: req.id });
    };
    const result = await deadLetters.replay(service, tenant, { ...parsed.data, onReplay });
    const auditId = result.dryRun ? undefined : (await deps.workbench.audit.record({ tenant, keyId: req.principal.keyId, requestId: req.id, action: 'replay', service, ids: [...new Set(result.replayed)], notFound: result.notFound.length, resetAttempts: parsed.data.resetAttempts === true })).id;
    deps.logger.info(
      { audit: 'dlq.replay', auditId, service, tenant, keyId: req.principal.keyId, requestId: req.id, replayed: result.replayed.length, notFound: result.notFound.length, dryRun: result.dryRun, resetAttempts: parsed.data.resetAttempts === true },
      'dlq replay',
    );
    res.json({ service, ...result });
  });

  router.delete('/v1/dlq/:service/:id', access, async (req, res) => {
    const service = serviceOf(req);
    const id = req.params.id as string;
    const tenant = req.principal.tenant;
    const removed = await deadLetters.discard(service, tenant, id);
    if (removed === 0) throw new GatewayError('GW_ERR_DLQ_ENTRY_NOT_FOUND', `no dead-letter entry ${JSON.stringify(id.slice(0, 200))}`);
    const reason = typeof req.query.reason === 'string' && req.query.reason.trim() ? req.query.reason.trim().slice(0, 500) : undefined;
    const entry = await deps.workbench.audit.record({ tenant, keyId: req.principal.keyId, requestId: req.id, action: 'discard', service, ids: [id], ...(reason ? { reason } : {}) });
    deps.logger.info({ audit: 'dlq.discard', auditId: entry.id, service, tenant, keyId: req.principal.keyId, jobId: id, requestId: req.id, removed }, 'dlq entry discarded');
    res.status(204).end();
  });

  return router;
}

const serviceParam = { service: z.string().describe('a configured service') };

/** OpenAPI entries of this router (collected by enqueuer/http/openapi.ts). */
export const dlqRouteDocs: RouteDoc[] = [
  {
    method: 'get', path: '/v1/dlq/{service}', tags: ['dlq'], summary: "Browse the tenant's dead letters of a service (oldest first); a full rotation that leaves the DLQ as it was", security: bearer,
    request: {
      params: pathParams(serviceParam),
      query: z.object({ limit: z.string().optional().describe(`1 to ${MAX_LIMIT}, default ${DEFAULT_LIMIT}`), cursor: z.string().optional() }),
    },
    responses: { 200: json(DeadLetterPageSchema, 'a page of dead letters', linkHeader), ...problems(...V1_PROBLEMS, 404) },
  },
  {
    method: 'post', path: '/v1/dlq/{service}/replay', tags: ['dlq'], summary: 'Replay some (every copy of each id) or all dead letters into the work queue', security: bearer,
    request: { params: pathParams(serviceParam), body: { content: { 'application/json': { schema: replayBody.meta({ id: 'ReplayRequest' }) } }, required: true } },
    responses: { 200: json(ReplayResultSchema, 'what was (or with dryRun would be) replayed'), ...problems(...V1_PROBLEMS, 404) },
  },
  {
    method: 'delete', path: '/v1/dlq/{service}/{id}', tags: ['dlq'], summary: 'Discard every copy of one dead letter (audit-logged)', security: bearer,
    request: { params: pathParams({ ...serviceParam, id: z.string().describe('job id') }), query: z.object({ reason: z.string().optional().describe('why, for the audit trail (POST /v1/dlq/{service}/discards requires one)') }) },
    responses: { 204: { description: 'discarded' }, ...problems(...V1_PROBLEMS, 404) },
  },
];
