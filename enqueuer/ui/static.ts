import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import express, { Router } from 'express';

/** The dashboard's files: plain ES modules and CSS, no build step (docs/adr/1600-dashboard-dlq-workbench-cancel.md). */
export const UI_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'ui');
/** The route label of every request under /ui (bounded: one value for all the dashboard's files). */
export const UI_ROUTE = '/ui/*';
const uplotDir = join(dirname(createRequire(import.meta.url).resolve('uplot/package.json')), 'dist');

/**
 * `/ui/`: the dashboard, served as static files from `ui/` and its chart library (uPlot) from
 * node_modules, same origin as the API, nothing from a CDN. Public like /docs: the page holds no
 * data; it signs in with an API key and calls the documented `/v1` API.
 */
export function uiRouter(): Router {
  const router = Router();
  const headers = (res: express.Response): void => {
    res.setHeader('cache-control', 'no-cache');
    res.setHeader('content-security-policy', "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'");
    res.setHeader('x-content-type-options', 'nosniff');
  };
  // Static files match no route template: their metrics and request log say this one, not `unmatched`.
  router.use('/ui', (_req, res, next) => {
    res.locals.route = UI_ROUTE;
    next();
  });
  router.use('/ui/vendor/uplot', express.static(uplotDir, { index: false, setHeaders: headers }));
  router.use('/ui', express.static(UI_DIR, { index: 'index.html', setHeaders: headers }));
  return router;
}
