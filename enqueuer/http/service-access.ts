import type { RequestHandler } from 'express';
import type { Guard } from '../security/guard.ts';

/**
 * Route middleware for the service allow-list of an API key: 403 `GW_ERR_FORBIDDEN` unless the
 * authenticated key may use the service named by the route parameter `param` (default `service`).
 * Mount it on every route with a `:service` parameter (DLQ browse/replay/discard/group/audit …),
 * before the handler reads anything; routes that return data of several services filter with
 * {@link Guard.mayUse} instead. The rule and where it applies: docs/security.md.
 */
export function requireServiceAccess(guard: Guard, param = 'service'): RequestHandler {
  return (req, _res, next) => {
    const service = req.params[param];
    if (typeof service === 'string') guard.authorizeService(req.principal, service);
    next();
  };
}
