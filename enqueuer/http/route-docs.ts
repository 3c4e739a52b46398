/**
 * How a route describes itself in the OpenAPI document. Each router module exports a
 * `RouteDoc[]` next to its handlers (e.g. `jobsRouteDocs` in routes/jobs.ts); enqueuer/http/openapi.ts
 * collects them. A test fails when a route of the app has no doc, and the contract test calls every
 * documented route and validates the answers against the document (docs/api.md, "Adding a route").
 */
import type { RouteConfig } from '@asteasolutions/zod-to-openapi';
import { z } from 'zod';
import { ProblemSchema } from './views.ts';

export type RouteDoc = RouteConfig;
type Responses = RouteConfig['responses'];

/** Response headers the gateway sets on every answer. */
const commonHeaders = {
  'x-request-id': { description: 'the request id (yours when you sent a well-formed X-Request-Id)', required: true, schema: { type: 'string' as const } },
};

/** A JSON answer with the given schema. */
export function json(schema: z.ZodType, description: string, headers: Record<string, { description: string; required?: boolean; schema: { type: 'string' } }> = {}): Responses[string] {
  return { description, headers: { ...commonHeaders, ...headers }, content: { 'application/json': { schema } } };
}

/** Problem answers (application/problem+json) for the given statuses. */
export function problems(...statuses: number[]): Responses {
  const out: Responses = {};
  for (const status of statuses) {
    out[String(status)] = {
      description: PROBLEM_DESCRIPTIONS[status] ?? 'problem',
      headers: {
        ...commonHeaders,
        ...(status === 429 || status === 503 ? { 'retry-after': { description: 'seconds to wait before retrying', schema: { type: 'string' as const } } } : {}),
      },
      content: { 'application/problem+json': { schema: ProblemSchema } },
    };
  }
  return out;
}

const PROBLEM_DESCRIPTIONS: Record<number, string> = {
  400: 'malformed request',
  401: 'missing or invalid API key',
  403: 'the key may not call this service',
  404: 'no such resource (also for another tenant\'s)',
  405: 'method not allowed',
  408: 'request not received in time',
  409: 'an idempotent request with this key is still in flight',
  413: 'body too large',
  414: 'request target too long',
  415: 'compressed body',
  417: 'unsupported Expect',
  422: 'Idempotency-Key reused with another request',
  429: 'rate limit or concurrency cap reached',
  431: 'request head too large',
  500: 'internal error',
  502: 'downstream unreachable or sent an invalid answer',
  503: 'broker unavailable, queue full, breaker open, shutting down',
  504: 'no reply within the wait',
};

/** Errors any authenticated `/v1` route can answer. */
export const V1_PROBLEMS = [400, 401, 429, 500, 503] as const;

/** A server-sent event stream whose `data` lines are `item`. */
export function sse(item: z.ZodType, description: string): Responses[string] {
  return {
    description: `${description} (text/event-stream: \`event:\` is the job state, \`data:\` a ${item.meta()?.id ?? 'JSON'} object, \`id:\` the transition's order; heartbeat comments)`,
    headers: commonHeaders,
    content: { 'text/event-stream': { schema: z.string().meta({ 'x-sse-data': { $ref: `#/components/schemas/${String(item.meta()?.id)}` } }) } },
  };
}

/** The `Link: <…>; rel="next"` header of a page. */
export const linkHeader = { link: { description: '`<url>; rel="next"` while there is a next page', schema: { type: 'string' as const } } };

/** Path parameter schemas (OpenAPI `{name}` in the path). */
export const pathParams = <T extends Record<string, z.ZodType>>(shape: T) => z.object(shape);

/** The API key scheme every `/v1` route uses. */
export const bearer = [{ bearer: [] }];
