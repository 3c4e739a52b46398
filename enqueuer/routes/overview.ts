import { Router } from 'express';
import type { Topology } from '../../shared/topology/topology.ts';
import type { EnqueuerConfig } from '../config.ts';
import type { BreakerBoard } from '../events/breaker-board.ts';
import { bearer, json, problems, V1_PROBLEMS, type RouteDoc } from '../http/route-docs.ts';
import { OverviewSchema } from '../http/views.ts';
import type { DelayedBacklog } from '../jobs/delayed-backlog.ts';
import type { Guard } from '../security/guard.ts';
import type { Workbench } from '../workbench/workbench.ts';

export interface OverviewRouteDeps {
  config: EnqueuerConfig;
  topology: Topology;
  breakers: BreakerBoard;
  delayed: DelayedBacklog;
  workbench: Workbench;
  guard: Guard;
}

const iso = (ms: number): string => new Date(ms).toISOString();

/** `GET /v1/overview`: the dashboard's live overview of every service the key may use. */
export function overviewRouter(deps: OverviewRouteDeps): Router {
  const router = Router();
  const { topology, workbench } = deps;
  router.get('/v1/overview', async (req, res) => {
    const tenant = req.principal.tenant;
    const services = Object.keys(deps.config.services).filter((s) => deps.guard.mayUse(req.principal, s)).sort();
    const out = await Promise.all(services.map(async (service) => {
      const [work, rpc, dlq, delayed] = await Promise.all([
        // Every lane of the service (docs/fairness.md): its jobs are spread over them by tenant.
        workbench.depths.depthOf(topology.lanes[service]!.map((lane) => topology.names.workQueue(service, lane))),
        workbench.depths.depth(topology.names.rpcQueue(service)),
        workbench.depths.depth(topology.names.deadLetterQueue(service)),
        deps.delayed.count(service),
      ]);
      const a = workbench.activity.view(tenant, service);
      const state = deps.breakers.stateOf(service);
      return {
        service,
        queues: { work, rpc, dlq, delayed },
        running: a.running,
        active: a.active,
        oldestCreatedAt: a.oldestCreatedAt === undefined ? null : iso(a.oldestCreatedAt),
        breaker: { state: state ?? 'unknown', retryAfterS: deps.breakers.openRetryAfterS(service) ?? null },
        perMinute: { minutes: a.minutes.map(iso), ...a.counts },
      };
    }));
    res.setHeader('cache-control', 'no-store');
    res.json({ at: iso(Date.now()), services: out });
  });
  return router;
}

/** OpenAPI entries of this router (collected by enqueuer/http/openapi.ts). */
export const overviewRouteDocs: RouteDoc[] = [
  {
    method: 'get', path: '/v1/overview', tags: ['jobs'], summary: 'Per service the key may use: queue depths (passive declares, cached 1 s), the tenant\'s jobs per minute over 15 minutes, oldest unfinished job, breaker', security: bearer,
    responses: { 200: json(OverviewSchema, 'the overview'), ...problems(...V1_PROBLEMS) },
  },
];
