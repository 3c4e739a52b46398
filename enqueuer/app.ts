import { STATUS_CODES } from 'node:http';
import express, { type Express, type Request, type RequestHandler } from 'express';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { authenticate } from './http/authenticate.ts';
import { inputLimits } from './http/client-error.ts';
import { openApiRouter } from './http/openapi.ts';
import { notFoundHandler, problemHandler } from './http/problem.ts';
import { requestId } from './http/request-id.ts';
import type { EnqueuerMetrics } from './metrics.ts';
import { healthRouter, type Readiness } from './routes/health.ts';
import { jobsRouter } from './routes/jobs.ts';
import { dlqRouter } from './routes/dlq.ts';
import { servicesHandler, servicesRouter, type ServicesRouteDeps } from './routes/services.ts';
import { servicesFastPath } from './http/fast-path.ts';
import type { EnqueuerConfig } from './config.ts';
import type { JobsRouteDeps } from './routes/jobs.ts';
import type { DlqRouteDeps } from './routes/dlq.ts';
import type { Guard } from './security/guard.ts';
import { GatewayError } from '../shared/errors.ts';
import { jobActionsRouter, type JobActionRouteDeps } from './routes/job-actions.ts';
import { overviewRouter, type OverviewRouteDeps } from './routes/overview.ts';
import { workbenchRouter, type WorkbenchRouteDeps } from './routes/workbench.ts';
import { uiRouter } from './ui/static.ts';

/** What the app's own middleware needs, and each router's own parts (nothing handed to a router it does not use). */
export interface AppDeps {
  config: Pick<EnqueuerConfig, 'logRequestSample' | 'limits'>;
  registry: Registry;
  metrics: EnqueuerMetrics;
  logger: Logger;
  readiness: () => Readiness;
  /** Authentication of every /v1 route. */
  guard: Guard;
  services: ServicesRouteDeps;
  jobs: JobsRouteDeps;
  dlq: DlqRouteDeps;
  /** The dashboard's routes: DLQ workbench and audit, job actions (cancel, timeline), overview. */
  workbench: WorkbenchRouteDeps;
  jobActions: JobActionRouteDeps;
  overview: OverviewRouteDeps;
}

const KNOWN_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);

/**
 * Status label with bounded cardinality: a registered HTTP status (node:http's STATUS_CODES, ~60)
 * as itself, anything else a downstream made up as its class (`2xx` … `5xx`).
 */
export function statusLabel(status: number): string {
  if (Object.hasOwn(STATUS_CODES, status)) return String(status);
  return status >= 100 && status <= 599 ? `${Math.floor(status / 100)}xx` : 'other';
}

/**
 * Route label with bounded cardinality: the matched route template, never the raw path; a static
 * mount (no route) names itself in `res.locals.route` (the dashboard: `/ui/*`).
 */
function routeLabel(req: Request): string {
  const path = (req.route as { path?: string } | undefined)?.path;
  if (typeof path === 'string') return req.baseUrl + path;
  const mount = req.res?.locals.route as unknown;
  return typeof mount === 'string' ? mount : 'unmatched';
}

function httpMetrics(metrics: EnqueuerMetrics): RequestHandler {
  // Label children cached by their (bounded) label values: no label hashing per request.
  const children = new Map<string, { count: { inc(): void }; duration: { observe(v: number): void } }>();
  return (req, res, next) => {
    const start = process.hrtime.bigint();
    res.once('finish', () => {
      const route = routeLabel(req);
      const method = KNOWN_METHODS.has(req.method) ? req.method : 'OTHER';
      const status = statusLabel(res.statusCode);
      const key = `${route} ${method} ${status}`;
      let child = children.get(key);
      if (!child) {
        const labels = { route, method, status };
        child = { count: metrics.httpRequests.labels(labels), duration: metrics.httpDuration.labels(labels) };
        children.set(key, child);
      }
      child.count.inc();
      child.duration.observe(Number(process.hrtime.bigint() - start) / 1e9);
    });
    next();
  };
}

/**
 * One `info` line per request (a `sample` share of the successful ones; 4xx/5xx always): method,
 * route template, status, duration and the ids (request, and job, tenant, service, trace once the
 * request became a job), so traffic shows in the logs, not only failures.
 */
function requestLog(logger: Logger, sample: number): RequestHandler {
  return (req, res, next) => {
    // With LOG_LEVEL above info the line would be dropped: no listener, no fields built for it.
    if (!logger.isLevelEnabled('info')) {
      next();
      return;
    }
    const start = process.hrtime.bigint();
    res.once('finish', () => {
      if (res.statusCode < 400 && (sample <= 0 || (sample < 1 && Math.random() >= sample))) return;
      const job = res.locals.job as Record<string, string> | undefined;
      const principal = (req as { principal?: { tenant?: string } }).principal;
      logger.info(
        {
          requestId: res.getHeader('x-request-id'),
          method: req.method,
          route: routeLabel(req),
          status: res.statusCode,
          durationMs: Math.round(Number(process.hrtime.bigint() - start) / 1e4) / 100,
          ...(principal?.tenant && !job ? { tenant: principal.tenant } : {}),
          ...(job ? { jobId: job.jobId, tenant: job.tenant, service: job.service, traceId: job.traceId } : {}),
        },
        'request',
      );
    });
    next();
  };
}

/**
 * OPTIONS is forwarded on the services route (mounted before this) and is no method of any other
 * route. Express would answer it itself for any path a route matches (200 and an `Allow` list),
 * past the route's own guards such as a key's service allow-list, and undocumented: it gets the
 * 404 problem every other method a route does not have gets (the property test found the 200).
 */
const noAutomaticOptions: RequestHandler = (req, _res, next) => {
  next(req.method === 'OPTIONS' ? new GatewayError('GW_ERR_NOT_FOUND', 'no such route') : undefined);
};

/** Builds the enqueuer's Express app (no `listen()`, so tests can drive it directly). */
export function createApp(deps: AppDeps): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  // What every request runs first, in this order (the services fast path runs the same list).
  const common = [requestId, httpMetrics(deps.metrics), requestLog(deps.logger, deps.config.logRequestSample), inputLimits(deps.config.limits)];
  const auth = authenticate(deps.guard);
  const services = servicesHandler(deps.services);
  // The sync hot path: `/v1/services/<name>…` through the same handlers without the router's walk (docs/adr/1404).
  app.use(servicesFastPath([...common, auth], services));
  for (const handler of common) app.use(handler);
  // Everything under /v1 is authenticated and rate-limited; health and metrics are not (keep them internal).
  // The /v1 routers come first: no path of theirs overlaps the public ones, and a sync request then
  // skips matching the health and API-reference routes (docs/adr/1402).
  app.use('/v1', auth);
  app.use(servicesRouter(services));
  app.use(noAutomaticOptions);
  app.use(jobsRouter(deps.jobs));
  app.use(workbenchRouter(deps.workbench));
  app.use(dlqRouter(deps.dlq));
  app.use(jobActionsRouter(deps.jobActions));
  app.use(overviewRouter(deps.overview));
  app.use(healthRouter(deps.readiness, deps.registry));
  // The API reference: the OpenAPI document and its renderer, public like the health routes.
  app.use(openApiRouter());
  // The dashboard's static files (it calls the /v1 API above with the operator's key).
  app.use(uiRouter());
  app.use(notFoundHandler);
  app.use(problemHandler(deps.logger));
  return app;
}

interface Layer {
  route?: { path: string; methods: Record<string, boolean> };
  handle?: { stack?: Layer[] };
}

/**
 * Every route of the app as `METHOD /openapi/{style}` (Express `:param` and `{/*path}` written as
 * OpenAPI templates; `all` routes as the methods the gateway forwards): the contract test checks
 * each one has an OpenAPI entry.
 */
export function listRoutes(app: Express): string[] {
  const out: string[] = [];
  const walk = (stack: Layer[]): void => {
    for (const layer of stack) {
      if (layer.route) {
        const path = layer.route.path.replace(/\{\/\*(\w+)\}/g, '/{$1}').replace(/:(\w+)/g, '{$1}');
        const methods = layer.route.methods._all ? ['get', 'post', 'put', 'patch', 'delete'] : Object.keys(layer.route.methods);
        for (const m of methods) out.push(`${m.toUpperCase()} ${path}`);
      } else if (layer.handle?.stack) walk(layer.handle.stack);
    }
  };
  walk((app as unknown as { router: { stack: Layer[] } }).router.stack);
  return out;
}
