import express, { type Express, type Request, type RequestHandler } from 'express';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { authenticate } from './http/authenticate.ts';
import { inputLimits } from './http/client-error.ts';
import { notFoundHandler, problemHandler } from './http/problem.ts';
import { requestId } from './http/request-id.ts';
import type { EnqueuerMetrics } from './metrics.ts';
import { healthRouter, type Readiness } from './routes/health.ts';
import { servicesRouter, type ServicesRouteDeps } from './routes/services.ts';

export interface AppDeps extends ServicesRouteDeps {
  registry: Registry;
  metrics: EnqueuerMetrics;
  logger: Logger;
  readiness: () => Readiness;
}

const KNOWN_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);

/** Route label with bounded cardinality: the matched route template, never the raw path. */
function routeLabel(req: Request): string {
  const path = (req.route as { path?: string } | undefined)?.path;
  return typeof path === 'string' ? req.baseUrl + path : 'unmatched';
}

function httpMetrics(metrics: EnqueuerMetrics): RequestHandler {
  return (req, res, next) => {
    const start = process.hrtime.bigint();
    res.once('finish', () => {
      const labels = { route: routeLabel(req), method: KNOWN_METHODS.has(req.method) ? req.method : 'OTHER', status: String(res.statusCode) };
      metrics.httpRequests.inc(labels);
      metrics.httpDuration.observe(labels, Number(process.hrtime.bigint() - start) / 1e9);
    });
    next();
  };
}

/** Builds the enqueuer's Express app (no `listen()`, so tests can drive it directly). */
export function createApp(deps: AppDeps): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.use(requestId);
  app.use(httpMetrics(deps.metrics));
  app.use(inputLimits(deps.config.limits));
  app.use(healthRouter(deps.readiness, deps.registry));
  // Everything under /v1 is authenticated and rate-limited; health and metrics are not (keep them internal).
  app.use('/v1', authenticate(deps.guard));
  app.use(servicesRouter(deps));
  app.use(notFoundHandler);
  app.use(problemHandler(deps.logger));
  return app;
}
