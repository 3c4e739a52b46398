import { request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { plainServiceName, servicesFastPath } from '../../enqueuer/http/fast-path.ts';
import { SERVICES_ROUTE } from '../../enqueuer/routes/services.ts';

/** Sends a raw request target (no URL normalisation on the way) and returns status and body. */
function get(port: number, target: string, method = 'GET'): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path: target, method }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('the services fast path claims only what the router route would match, with the same service', () => {
  // The router's view: the real route template, the service as Express decodes it.
  const router = express();
  router.all(SERVICES_ROUTE, (req, res) => void res.json({ service: req.params.service }));
  router.use((_req, res) => void res.status(404).json({ service: null }));
  let server: ReturnType<typeof router.listen>;
  let port = 0;
  beforeAll(async () => {
    server = router.listen(0, '127.0.0.1');
    await new Promise<void>((r) => server.once('listening', () => r()));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  const claimed = [
    '/v1/services/echo', '/v1/services/echo/', '/v1/services/echo/echo', '/v1/services/echo?x=1', '/v1/services/echo/a/b?c=d',
    '/v1/services/echo//x', '/v1/services/e.c-h_o~!$&\'()*+,;=:@/x', '/v1/services/constructor/x', '/v1/services/__proto__',
    '/v1/services/echo/%2e%2e/x', '/v1/services/echo?%zz',
  ];
  it.each(claimed)('%s: the same service as the router', async (target) => {
    const name = plainServiceName(target);
    expect(name).toBeDefined();
    const { status, body } = await get(port, target);
    expect(status).toBe(200);
    expect(JSON.parse(body)).toEqual({ service: name });
  });

  it.each([
    '/v1/services/', '/v1/services//echo', '/v1/services?x', '/v1/services', '/v1/services/ech%6f/x', '/v1/services/%zz',
    '/V1/services/echo', '/v1/Services/echo', 'http://host/v1/services/echo', '/v1/servicesx/echo', '/v2/services/echo', '*',
  ])('%s: left to the router', (target) => {
    expect(plainServiceName(target)).toBeUndefined();
  });
});

describe('servicesFastPath', () => {
  it('runs the middleware in order, then the handler; an error anywhere goes to the app (once), the rest never runs', async () => {
    const seen: string[] = [];
    const app = express();
    app.use(servicesFastPath([
      (_req, _res, next) => { seen.push('a'); next(); },
      (req, _res, next) => { seen.push('b'); next(req.headers['x-fail'] === 'b' ? new Error('b failed') : undefined); },
      async (req, _res, next) => { seen.push('c'); if (req.headers['x-fail'] === 'c') throw new Error('c failed'); next(); },
    ], async (req, res, service) => {
      seen.push(`handler ${service} ${res.locals.route as string}`);
      if (req.headers['x-fail'] === 'handler') throw new Error('handler failed');
      res.end('ok');
    }));
    app.use((_req, res) => void res.status(404).end('router'));
    app.use((err: Error, _req: express.Request, res: express.Response, _next: express.NextFunction) => void res.status(500).end(err.message));
    const server = app.listen(0, '127.0.0.1');
    await new Promise<void>((r) => server.once('listening', () => r()));
    const port = (server.address() as AddressInfo).port;
    const send = (path: string, fail?: string): Promise<{ status: number; body: string }> => new Promise((resolve, reject) => {
      const req = httpRequest({ host: '127.0.0.1', port, path, headers: fail ? { 'x-fail': fail } : {} }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('error', reject);
      req.end();
    });
    try {
      expect(await send('/v1/services/echo/x')).toEqual({ status: 200, body: 'ok' });
      expect(seen.splice(0)).toEqual(['a', 'b', 'c', `handler echo ${SERVICES_ROUTE}`]);
      expect(await send('/v1/services/echo/x', 'b')).toEqual({ status: 500, body: 'b failed' });
      expect(seen.splice(0)).toEqual(['a', 'b']);
      expect(await send('/v1/services/echo/x', 'c')).toEqual({ status: 500, body: 'c failed' });
      expect(seen.splice(0)).toEqual(['a', 'b', 'c']);
      expect(await send('/v1/services/echo/x', 'handler')).toEqual({ status: 500, body: 'handler failed' });
      expect(seen.splice(0)).toEqual(['a', 'b', 'c', `handler echo ${SERVICES_ROUTE}`]);
      // Not a plain services target: nothing of the fast path runs, the router goes on.
      expect(await send('/v1/services/ech%6f/x')).toEqual({ status: 404, body: 'router' });
      expect(await send('/v1/jobs')).toEqual({ status: 404, body: 'router' });
      expect(seen).toEqual([]);
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
    }
  });
});
