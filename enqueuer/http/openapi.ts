/**
 * The OpenAPI 3.1 document, generated from the code: the routers' `RouteDoc`s (enqueuer/http/route-docs.ts)
 * and the zod schemas of the views (enqueuer/http/views.ts), through @asteasolutions/zod-to-openapi.
 * Served at `/openapi.json`; `/docs` renders it with Swagger UI from the swagger-ui-dist package
 * (assets served from node_modules, nothing fetched from the internet).
 */
import { OpenAPIRegistry, OpenApiGeneratorV31 } from '@asteasolutions/zod-to-openapi';
import express, { Router } from 'express';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { dlqRouteDocs } from '../routes/dlq.ts';
import { healthRouteDocs } from '../routes/health.ts';
import { jobsRouteDocs } from '../routes/jobs.ts';
import { servicesRouteDocs } from '../routes/services.ts';
import { jobActionRouteDocs } from '../routes/job-actions.ts';
import { overviewRouteDocs } from '../routes/overview.ts';
import { workbenchRouteDocs } from '../routes/workbench.ts';
import type { RouteDoc } from './route-docs.ts';
import { JobEventSchema } from './views.ts';

/** OpenAPI entries of the document routes themselves. */
const docsRouteDocs: RouteDoc[] = [
  {
    method: 'get', path: '/openapi.json', tags: ['reference'], summary: 'This OpenAPI 3.1 document',
    responses: { 200: { description: 'the document', content: { 'application/json': { schema: { type: 'object' } } } } },
  },
  {
    method: 'get', path: '/docs', tags: ['reference'], summary: 'Interactive API reference (Swagger UI)',
    responses: { 200: { description: 'HTML page', content: { 'text/html': { schema: { type: 'string' } } } } },
  },
  {
    method: 'get', path: '/docs/init.js', tags: ['reference'], summary: "The reference page's start script (points Swagger UI at /openapi.json)",
    responses: { 200: { description: 'script', content: { 'text/javascript': { schema: { type: 'string' } } } } },
  },
];

/**
 * Every route's doc. A router that adds routes exports its own `RouteDoc[]` and is listed here;
 * test/integration/api-contract.test.ts fails for any route of the app that has none.
 */
export const ROUTE_DOCS: readonly RouteDoc[] = [...healthRouteDocs, ...docsRouteDocs, ...servicesRouteDocs, ...jobsRouteDocs, ...jobActionRouteDocs, ...overviewRouteDocs, ...dlqRouteDocs, ...workbenchRouteDocs];

type OpenApiDocument = ReturnType<OpenApiGeneratorV31['generateDocument']>;

/** Builds the document from {@link ROUTE_DOCS}. */
export function buildOpenApiDocument(routeDocs: readonly RouteDoc[] = ROUTE_DOCS): OpenApiDocument {
  const registry = new OpenAPIRegistry();
  registry.registerComponent('securitySchemes', 'bearer', { type: 'http', scheme: 'bearer', description: 'API key (`gwk_…`); not needed with AUTH_MODE=none' });
  for (const doc of routeDocs) registry.registerPath(doc);
  // SSE streams name their events' schema (`x-sse-data`); it is a component of its own (named by its meta id).
  return new OpenApiGeneratorV31([...registry.definitions, { type: 'schema', schema: JobEventSchema }]).generateDocument({
    openapi: '3.1.0',
    info: {
      title: 'rabbit-gateway enqueuer',
      version: '1',
      description: 'HTTP in front, RabbitMQ in the middle: forward a request to a service synchronously, or as an async job (Prefer: respond-async); read jobs, their events and the dead-letter queue. Errors are RFC 9457 problems with a registry `code`.',
    },
    tags: [
      { name: 'services', description: 'forwarding through RabbitMQ' },
      { name: 'jobs', description: 'async jobs and their events' },
      { name: 'dlq', description: 'dead-letter queue operations' },
      { name: 'health', description: 'liveness, readiness, metrics' },
      { name: 'reference', description: 'this document' },
    ],
  });
}

const swaggerDir = dirname(createRequire(import.meta.url).resolve('swagger-ui-dist/package.json'));

const DOCS_HTML = `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>rabbit-gateway API</title>
<link rel="stylesheet" href="/docs/assets/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script src="/docs/init.js"></script>
</body></html>`;

// validatorUrl null: Swagger UI would otherwise send the document to validator.swagger.io.
const DOCS_INIT = `window.ui = SwaggerUIBundle({ url: '/openapi.json', dom_id: '#swagger-ui', validatorUrl: null, deepLinking: true, docExpansion: 'list' });`;

/** `GET /openapi.json`, `GET /docs` and the renderer's assets. */
export function openApiRouter(): Router {
  const router = Router();
  const body = JSON.stringify(buildOpenApiDocument());
  router.get('/openapi.json', (_req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(body);
  });
  router.get('/docs', (_req, res) => {
    res.setHeader('content-type', 'text/html; charset=utf-8');
    res.end(DOCS_HTML);
  });
  router.get('/docs/init.js', (_req, res) => {
    res.setHeader('content-type', 'text/javascript; charset=utf-8');
    res.end(DOCS_INIT);
  });
  router.use('/docs/assets', express.static(swaggerDir, { index: false }));
  return router;
}
