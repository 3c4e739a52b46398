import { Router } from 'express';
import type { Registry } from 'prom-client';

/** What `/readyz` reports: ready only when every check passes. */
export interface Readiness {
  ready: boolean;
  checks: Record<string, boolean | string>;
}

/** `/healthz` (liveness: the process answers), `/readyz` (readiness), `/metrics` (Prometheus). */
export function healthRouter(readiness: () => Readiness, registry: Registry): Router {
  const router = Router();
  router.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  router.get('/readyz', (_req, res) => {
    const r = readiness();
    res.status(r.ready ? 200 : 503).json({ status: r.ready ? 'ready' : 'not ready', checks: r.checks });
  });
  router.get('/metrics', async (_req, res) => {
    res.setHeader('content-type', registry.contentType);
    res.end(await registry.metrics());
  });
  return router;
}
