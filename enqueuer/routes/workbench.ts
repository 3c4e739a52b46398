import express, { Router, type Request } from 'express';
import type { Logger } from 'pino';
import { z } from 'zod';
import { GatewayError } from '../../shared/errors.ts';
import { SERVICE_NAME_PATTERN } from '../../shared/topology/names.ts';
import type { EnqueuerConfig } from '../config.ts';
import type { DeadLetters } from '../dlq.ts';
import { bearer, json, linkHeader, pathParams, problems, V1_PROBLEMS, type RouteDoc } from '../http/route-docs.ts';
import { requireServiceAccess } from '../http/service-access.ts';
import { AuditPageSchema, auditView, DlqGroupPageSchema, DlqOperationResultSchema, sendPage } from '../http/views.ts';
import type { JobStore } from '../jobs/job-store.ts';
import type { EnqueuerMetrics } from '../metrics.ts';
import type { Guard } from '../security/guard.ts';
import type { JobEvents } from '../events/job-events.ts';
import type { AuditEntry } from '../workbench/audit-trail.ts';
import { groupDeadLetters, MAX_GROUP_IDS, type DlqGroup } from '../workbench/dlq-groups.ts';
import type { Workbench } from '../workbench/workbench.ts';
import { decodeCursor, encodeCursor } from './dlq.ts';

export interface WorkbenchRouteDeps {
  config: EnqueuerConfig;
  deadLetters: DeadLetters;
  jobs: JobStore;
  workbench: Workbench;
  logger: Logger;
  metrics: EnqueuerMetrics;
  /** Records a job event here and tells the other replicas. */
  jobEvents: Pick<JobEvents, 'record'>;
  guard: Guard;
}

/** Longest a paced (rate-limited) replay may take; a slower one is refused 400. */
export const MAX_PACED_REPLAY_S = 120;

const ids = z.array(z.string().min(1).max(200)).min(1).max(1000);
const selection = { ids: ids.optional(), group: z.string().min(1).max(200).optional().describe('a group id of GET /v1/dlq/{service}/groups') };
const oneSelection = (b: { ids?: unknown; group?: unknown }): boolean => (b.ids === undefined) !== (b.group === undefined);

const replaysBody = z
  .strictObject({
    ...selection,
    dryRun: z.boolean().optional().describe('list what would be sent, change nothing'),
    resetAttempts: z.boolean().optional().describe('start the jobs again at attempt 1'),
    ratePerS: z.number().min(0.1).max(1000).optional().describe(`replay at most this many jobs per second (the whole replay within ${MAX_PACED_REPLAY_S} s)`),
    redirectTo: z.string().regex(SERVICE_NAME_PATTERN).optional().describe('replay into this service instead (the key must be allowed to use it)'),
    note: z.string().min(1).max(500).optional().describe('why, for the audit trail'),
  })
  .refine(oneSelection, { message: 'give either ids or group' })
  .meta({ id: 'DlqReplaysRequest' });

const discardsBody = z
  .strictObject({ ...selection, reason: z.string().trim().min(1).max(500).describe('why (required; kept in the audit trail)'), dryRun: z.boolean().optional() })
  .refine(oneSelection, { message: 'give either ids or group' })
  .meta({ id: 'DlqDiscardsRequest' });

function parse<T>(schema: z.ZodType<T>, body: unknown): T {
  const parsed = schema.safeParse(body ?? {});
  if (!parsed.success) throw new GatewayError('GW_ERR_BAD_REQUEST', parsed.error.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`).join('; '));
  return parsed.data;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

const groupView = (g: DlqGroup) => ({ ...g, ids: g.ids.slice(0, MAX_GROUP_IDS), idsTruncated: g.ids.length > MAX_GROUP_IDS });

/**
 * The DLQ workbench: failures grouped, replay (by group or selection; dry run, pace, attempt reset,
 * redirect) and discard (with a reason) of many entries, and the audit trail of what operators did.
 * Every route is tenant-scoped and honours the key's service allow-list like the DLQ routes.
 */
export function workbenchRouter(deps: WorkbenchRouteDeps): Router {
  const router = Router();
  const { config, deadLetters, workbench, guard } = deps;
  const access = requireServiceAccess(guard);
  const serviceOf = (name: string): string => {
    if (!Object.hasOwn(config.services, name)) throw new GatewayError('GW_ERR_SERVICE_UNKNOWN', `no service named ${JSON.stringify(name.slice(0, 64))}`);
    return name;
  };

  async function groups(service: string, tenant: string): Promise<DlqGroup[]> {
    const entries = await deadLetters.entries(service, tenant);
    const records = new Map<string, Awaited<ReturnType<JobStore['get']>>>();
    const wanted = [...new Set(entries.map((e) => e.jobId).filter((id): id is string => id !== null))];
    for (let i = 0; i < wanted.length; i += 100) {
      const chunk = wanted.slice(i, i + 100);
      const got = await Promise.all(chunk.map((id) => deps.jobs.get(tenant, id)));
      chunk.forEach((id, k) => records.set(id, got[k]));
    }
    return groupDeadLetters(entries, (id) => records.get(id));
  }

  /** The ids a selection names: its own ids, or every id of the group (404 when the group is empty now). */
  async function selected(service: string, tenant: string, b: { ids?: string[] | undefined; group?: string | undefined }): Promise<string[]> {
    if (b.ids) return b.ids;
    const g = (await groups(service, tenant)).find((x) => x.id === b.group);
    if (!g) throw new GatewayError('GW_ERR_DLQ_ENTRY_NOT_FOUND', 'no dead letters in this group');
    return g.ids;
  }

  async function audit(req: Request, fields: Omit<AuditEntry, 'v' | 'id' | 'at' | 'count' | 'tenant' | 'keyId' | 'requestId'>): Promise<string> {
    const entry = await workbench.audit.record({ ...fields, tenant: req.principal.tenant, keyId: req.principal.keyId, requestId: req.id });
    deps.logger.info({ audit: `dlq.${fields.action}`, auditId: entry.id, service: fields.service, tenant: entry.tenant, keyId: entry.keyId, requestId: req.id, count: entry.count }, 'dlq operation audited');
    return entry.id;
  }

  router.get('/v1/dlq/:service/groups', access, async (req, res) => {
    const service = serviceOf(req.params.service as string);
    const all = await groups(service, req.principal.tenant);
    res.setHeader('cache-control', 'no-store');
    res.json({ items: all.map(groupView), next: null, total: all.length });
  });

  router.post('/v1/dlq/:service/replays', access, express.json({ limit: '256kb', strict: true }), async (req, res) => {
    const service = serviceOf(req.params.service as string);
    const b = parse(replaysBody, req.body);
    const target = b.redirectTo === undefined ? service : serviceOf(b.redirectTo);
    if (target !== service) guard.authorizeService(req.principal, target);
    const tenant = req.principal.tenant;
    const wanted = await selected(service, tenant, b);
    if (b.ratePerS !== undefined && wanted.length / b.ratePerS > MAX_PACED_REPLAY_S) {
      throw new GatewayError('GW_ERR_BAD_REQUEST', `${wanted.length} jobs at ${b.ratePerS}/s take longer than ${MAX_PACED_REPLAY_S} s: raise ratePerS or select fewer`);
    }
    const base = { resetAttempts: b.resetAttempts === true, ...(target === service ? {} : { redirectTo: target }) };
    if (b.dryRun) {
      const r = await deadLetters.replay(service, tenant, { ids: wanted, dryRun: true });
      res.json({ service, target, action: 'replay', dryRun: true, ids: [...new Set(r.replayed)], notFound: r.notFound, auditId: null });
      return;
    }
    // Paced: chunks of ⌈rate⌉ (at least 1) one rotation each, spaced so the rate holds.
    const chunk = b.ratePerS === undefined ? wanted.length : Math.max(1, Math.floor(b.ratePerS));
    const spacingMs = b.ratePerS === undefined ? 0 : (chunk / b.ratePerS) * 1000;
    const replayed: string[] = [];
    const notFound: string[] = [];
    let failure: unknown;
    for (let i = 0; i < wanted.length; i += chunk) {
      const t0 = Date.now();
      try {
        // Recorded `queued` before its copy goes out: a dequeuer may run it before the rotation ends.
        const onReplay = (jobId: string): void => {
          replayed.push(jobId);
          deps.metrics.jobsReplayed.labels(service).inc();
          deps.jobEvents.record({ v: 1, kind: 'job', jobId, tenant, service: target, state: 'queued', attempt: 1, at: Date.now(), replay: true, requestId: req.id });
        };
        const r = await deadLetters.replay(service, tenant, { ids: wanted.slice(i, i + chunk), ...base, onReplay });
        notFound.push(...r.notFound);
      } catch (err) {
        failure = err;
        break;
      }
      if (i + chunk < wanted.length) await sleep(Math.max(0, spacingMs - (Date.now() - t0)));
    }
    // What was replayed is audited even when a later chunk failed (then the error answers).
    const auditId = replayed.length > 0 || failure === undefined
      ? await audit(req, { action: 'replay', service, ...(target === service ? {} : { target }), ids: replayed, notFound: notFound.length, ...(b.group ? { group: b.group } : {}), ...(b.ratePerS === undefined ? {} : { ratePerS: b.ratePerS }), resetAttempts: b.resetAttempts === true, ...(b.note ? { reason: b.note } : {}) })
      : null;
    if (failure !== undefined) throw failure;
    res.json({ service, target, action: 'replay', dryRun: false, ids: replayed, notFound, auditId });
  });

  router.post('/v1/dlq/:service/discards', access, express.json({ limit: '256kb', strict: true }), async (req, res) => {
    const service = serviceOf(req.params.service as string);
    const b = parse(discardsBody, req.body);
    const tenant = req.principal.tenant;
    const wanted = await selected(service, tenant, b);
    if (b.dryRun) {
      const r = await deadLetters.replay(service, tenant, { ids: wanted, dryRun: true });
      res.json({ service, target: service, action: 'discard', dryRun: true, ids: [...new Set(r.replayed)], notFound: r.notFound, auditId: null });
      return;
    }
    const r = await deadLetters.discardMany(service, tenant, wanted);
    const auditId = await audit(req, { action: 'discard', service, ids: r.discarded, notFound: r.notFound.length, reason: b.reason, ...(b.group ? { group: b.group } : {}) });
    res.json({ service, target: service, action: 'discard', dryRun: false, ids: r.discarded, notFound: r.notFound, auditId });
  });

  router.get('/v1/audit', (req, res) => {
    const service = req.query.service;
    if (service !== undefined && (typeof service !== 'string' || !SERVICE_NAME_PATTERN.test(service))) throw new GatewayError('GW_ERR_BAD_REQUEST', 'invalid service');
    if (service !== undefined) guard.authorizeService(req.principal, service);
    const limitRaw = req.query.limit;
    if (limitRaw !== undefined && (typeof limitRaw !== 'string' || !/^\d{1,3}$/.test(limitRaw) || Number(limitRaw) < 1 || Number(limitRaw) > 500)) throw new GatewayError('GW_ERR_BAD_REQUEST', 'limit must be an integer from 1 to 500');
    const limit = limitRaw === undefined ? 50 : Number(limitRaw);
    const offset = decodeCursor(req.query.cursor);
    const page = workbench.audit.list(req.principal.tenant, { service, services: req.principal.services, limit, offset });
    res.setHeader('cache-control', 'no-store');
    sendPage(res, { items: page.items.map(auditView), next: page.nextOffset === undefined ? null : encodeCursor(page.nextOffset) }, { path: '/v1/audit', query: { service, limit: String(limit) } });
  });

  return router;
}

const serviceParam = pathParams({ service: z.string().describe('a configured service') });
const body = (schema: z.ZodType) => ({ content: { 'application/json': { schema } }, required: true });

/** OpenAPI entries of this router (collected by enqueuer/http/openapi.ts). */
export const workbenchRouteDocs: RouteDoc[] = [
  {
    method: 'get', path: '/v1/dlq/{service}/groups', tags: ['dlq'], summary: "The tenant's dead letters grouped by failure (HTTP status, error code, dead-letter reason), largest first", security: bearer,
    request: { params: serviceParam },
    responses: { 200: json(DlqGroupPageSchema, 'the groups (one page)'), ...problems(...V1_PROBLEMS, 403, 404) },
  },
  {
    method: 'post', path: '/v1/dlq/{service}/replays', tags: ['dlq'], summary: 'Replay a group or a selection of dead letters: dry run, pace (ratePerS), attempt reset, redirect to another service; audited', security: bearer,
    request: { params: serviceParam, body: body(replaysBody) },
    responses: { 200: json(DlqOperationResultSchema, 'what was (or with dryRun would be) replayed'), ...problems(...V1_PROBLEMS, 403, 404) },
  },
  {
    method: 'post', path: '/v1/dlq/{service}/discards', tags: ['dlq'], summary: 'Discard a group or a selection of dead letters, with a required reason; audited', security: bearer,
    request: { params: serviceParam, body: body(discardsBody) },
    responses: { 200: json(DlqOperationResultSchema, 'what was (or with dryRun would be) discarded'), ...problems(...V1_PROBLEMS, 403, 404) },
  },
  {
    method: 'get', path: '/v1/audit', tags: ['dlq'], summary: "The tenant's audit trail (replays, discards, cancels), newest first; kept 90 days in a stream", security: bearer,
    request: { query: z.object({ service: z.string().optional(), limit: z.string().optional().describe('1 to 500, default 50'), cursor: z.string().optional() }) },
    responses: { 200: json(AuditPageSchema, 'a page of audit entries', linkHeader), ...problems(...V1_PROBLEMS, 403) },
  },
];
