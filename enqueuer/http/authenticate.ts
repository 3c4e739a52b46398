import type { RequestHandler } from 'express';
import type { Principal } from '../security/api-keys.ts';
import type { Guard } from '../security/guard.ts';

declare module 'express-serve-static-core' {
  interface Request {
    /** The authenticated caller (tenant, key id, allowed services); set for every /v1 route. */
    principal: Principal;
  }
}

/**
 * Mounted on `/v1`: authenticates the request (401/429), then takes one token from the tenant's
 * bucket (429 with `Retry-After`, `RateLimit-Policy` and `RateLimit`). Routes read the tenant only
 * from `req.principal`, never from a header the client sends.
 */
export function authenticate(guard: Guard): RequestHandler {
  return (req, res, next) => {
    try {
      req.principal = guard.authenticate(req.headers.authorization, req.socket.remoteAddress ?? 'unknown');
    } catch (err) {
      next(err);
      return;
    }
    // Without a limit for this principal the chain goes on in this turn: no promise, no microtask.
    if (!guard.isRateLimited(req.principal)) {
      next();
      return;
    }
    guard
      .takeRateLimit(req.principal, (h) => {
        res.setHeader('ratelimit-policy', h.policy);
        res.setHeader('ratelimit', h.limit);
      })
      .then(() => next(), next);
  };
}
