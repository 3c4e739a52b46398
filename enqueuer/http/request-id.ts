import { randomUUID } from 'node:crypto';
import type { RequestHandler } from 'express';

const CLIENT_ID = /^[A-Za-z0-9._:-]{1,128}$/;

declare module 'express-serve-static-core' {
  interface Request {
    /** The request's id: the client's `X-Request-Id` when well-formed, else a new UUID. */
    id: string;
  }
}

/** Gives every request an id and echoes it in `X-Request-Id`. */
export const requestId: RequestHandler = (req, res, next) => {
  const given = req.headers['x-request-id'];
  req.id = typeof given === 'string' && CLIENT_ID.test(given) ? given : randomUUID();
  res.setHeader('x-request-id', req.id);
  next();
};
