import type { ErrorRequestHandler, RequestHandler, Response } from 'express';
import type { Logger } from 'pino';
import { GatewayError, isGatewayError } from '../../shared/errors.ts';
import { writeProblem } from '../../shared/http-problem.ts';

/** Errors from Express/body-parser/Node that carry an HTTP meaning of their own. */
function fromFrameworkError(err: unknown): GatewayError | undefined {
  const e = err as { type?: string; status?: number; code?: string } | undefined;
  if (!e || typeof e !== 'object') return undefined;
  if (e.type === 'entity.too.large') return new GatewayError('GW_ERR_BODY_TOO_LARGE', undefined, { cause: err });
  if (e.type === 'entity.parse.failed') return new GatewayError('GW_ERR_BAD_REQUEST', 'request body is not valid JSON', { cause: err });
  if (e.type === 'encoding.unsupported' || e.type === 'charset.unsupported') return new GatewayError('GW_ERR_UNSUPPORTED_ENCODING', undefined, { cause: err });
  if (e.code === 'ERR_INVALID_URL' || err instanceof URIError) return new GatewayError('GW_ERR_BAD_REQUEST', 'malformed URL', { cause: err });
  if (typeof e.status === 'number' && e.status >= 400 && e.status < 500) return new GatewayError('GW_ERR_BAD_REQUEST', undefined, { cause: err });
  return undefined;
}

/** Writes one problem response through the one writer (shared/errors.ts `problemResponse`). */
export function sendProblem(res: Response, err: unknown): void {
  const ge = isGatewayError(err) ? err : fromFrameworkError(err) ?? err;
  writeProblem(res, ge, { requestId: res.getHeader('x-request-id') as string | undefined });
}

/** The single error middleware: typed errors map through the registry, anything else is an opaque 500. */
export function problemHandler(logger: Logger): ErrorRequestHandler {
  return (err, req, res, _next) => {
    const ge = isGatewayError(err) ? err : fromFrameworkError(err);
    const status = ge?.status ?? 500;
    const requestId = res.getHeader('x-request-id');
    // The job's ids (jobId, tenant, service, traceId) once the request became a job.
    const job = res.locals.job as Record<string, string> | undefined;
    if (status >= 500 && !ge) logger.error({ err, requestId, ...job, route: (req.route as { path?: string } | undefined)?.path ?? (res.locals.route as string | undefined) }, 'unhandled error in request');
    else if (status >= 500) logger.warn({ code: ge?.code, detail: ge?.message, ...(ge?.cause === undefined ? {} : { err: ge.cause }), requestId, ...job }, 'request failed');
    if (res.headersSent) {
      res.destroy();
      return;
    }
    sendProblem(res, ge ?? err);
  };
}

/** Unknown routes answer a 404 problem. */
export const notFoundHandler: RequestHandler = (_req, _res, next) => {
  next(new GatewayError('GW_ERR_NOT_FOUND', 'no such route'));
};
