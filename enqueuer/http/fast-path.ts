import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { SERVICES_ROUTE, type ServicesHandler } from '../routes/services.ts';

const PREFIX = '/v1/services/';

/**
 * The service of a request target `/v1/services/<name>[/…][?…]` when `<name>` is plain (not empty,
 * no percent-encoding), else undefined: those targets, and every other spelling the router would
 * also match (`/V1/…`, an absolute-form target), are left to the router, which decodes them.
 */
export function plainServiceName(url: string): string | undefined {
  if (!url.startsWith(PREFIX)) return undefined;
  let end = PREFIX.length;
  for (; end < url.length; end++) {
    const c = url.charCodeAt(end);
    if (c === 0x2f /* / */ || c === 0x3f /* ? */) break;
    if (c === 0x25 /* % */) return undefined;
  }
  return end === PREFIX.length ? undefined : url.slice(PREFIX.length, end);
}

/**
 * The sync hot path (docs/adr/1404). A request to `/v1/services/<name>…` runs the middleware the
 * router would run for it, in the same order, each handing to the next directly, then the services
 * handler: the router would match the path of every layer on the way (request id, metrics, log,
 * limits, the `/v1` mount, the services router, its route) and build a `next` for each.
 * An error goes to `next(err)`, so the app's problem handler answers it exactly as before; any other
 * target goes on through the router unchanged.
 */
export function servicesFastPath(middleware: readonly RequestHandler[], handle: ServicesHandler): RequestHandler {
  return (req: Request, res: Response, next: NextFunction) => {
    const service = plainServiceName(req.url);
    if (service === undefined) {
      next();
      return;
    }
    let i = 0;
    const step = (err?: unknown): void => {
      if (err) {
        next(err);
        return;
      }
      try {
        const h = middleware[i++];
        if (h) {
          // As Express 5 does: a middleware's rejected promise is its error.
          const r = h(req, res, step) as unknown;
          if (r instanceof Promise) r.catch(next);
          return;
        }
        // The route template labels the request's metrics and log line, as the router's route would.
        res.locals.route = SERVICES_ROUTE;
        handle(req, res, service).catch(next);
      } catch (e) {
        next(e);
      }
    };
    step();
  };
}
