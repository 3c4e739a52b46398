import { Router } from 'express';
import type { Registry } from 'prom-client';
import { z } from 'zod';
import { json, type RouteDoc } from '../http/route-docs.ts';

/** What `/readyz` reports: ready only when every check passes. */
export interface Readiness {
  ready: boolean;
  checks: Record<string, boolean | string>;
  /** The broker's capabilities as probed at start-up (shown, not gating). */
  broker?: unknown;
}

/** `/healthz` (liveness: the process answers), `/readyz` (readiness), `/metrics` (Prometheus). */
export function healthRouter(readiness: () => Readiness, registry: Registry): Router {
  const router = Router();
  router.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  router.get('/readyz', (_req, res) => {
    const r = readiness();
    res.status(r.ready ? 200 : 503).json({ status: r.ready ? 'ready' : 'not ready', checks: r.checks, ...(r.broker ? { broker: r.broker } : {}) });
  });
  router.get('/metrics', async (_req, res) => {
    res.setHeader('content-type', registry.contentType);
    res.end(await registry.metrics());
  });
  return router;
}

const ReadinessSchema = z
  .object({ status: z.enum(['ready', 'not ready']), checks: z.record(z.string(), z.union([z.boolean(), z.string()])) })
  .meta({ id: 'Readiness' });

/** OpenAPI entries of this router (collected by enqueuer/http/openapi.ts). */
export const healthRouteDocs: RouteDoc[] = [
  {
    method: 'get', path: '/healthz', tags: ['health'], summary: 'Liveness: the process answers',
    responses: { 200: json(z.object({ status: z.literal('ok') }), 'alive') },
  },
  {
    method: 'get', path: '/readyz', tags: ['health'], summary: 'Readiness: broker connected, topology declared, reply channels open, not blocked, not draining',
    responses: { 200: json(ReadinessSchema, 'ready'), 503: json(ReadinessSchema, 'not ready') },
  },
  {
    method: 'get', path: '/metrics', tags: ['health'], summary: 'Prometheus exposition',
    responses: { 200: { description: 'metrics', content: { 'text/plain': { schema: z.string() } } } },
  },
];
