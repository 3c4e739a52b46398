import { Router, type Request, type Response } from 'express';
import { GatewayError } from '../../shared/errors.ts';
import type { EnqueuerConfig } from '../config.ts';
import { parseIdempotencyKey } from '../jobs/idempotency-store.ts';
import { z } from 'zod';
import { bearer, json, pathParams, problems, V1_PROBLEMS, type RouteDoc } from '../http/route-docs.ts';
import { JobSchema, sendAccepted, sendJobReply, sendReply } from '../http/views.ts';
import { assertAmqpContentType, forwardedTarget, pickHeaders, validTraceparent, validTracestate } from '../http/forward.ts';
import { parseDelay } from '../http/delay.ts';
import { parsePrefer } from '../http/prefer.ts';
import { parsePriority } from '../http/priority.ts';
import { maxDelayMs } from '../../shared/topology/delay.ts';
import type { Topology } from '../../shared/topology/topology.ts';
import { readRawBody } from '../http/raw-body.ts';
import type { Guard } from '../security/guard.ts';
import type { Submitter } from '../submit/submitter.ts';
import type { Accepted, Reply, SubmitRequest } from '../submit/types.ts';

export type { JobLogFields } from '../submit/types.ts';

export interface ServicesRouteDeps {
  config: Pick<EnqueuerConfig, 'services' | 'defaultWaitMs' | 'maxWaitMs' | 'bodyLimitBytes'>;
  topology: Topology;
  /** Authorisation and the per-tenant cap on requests waiting for an answer. */
  guard: Guard;
  /** Publishing, the job store and idempotency (enqueuer/submit/). */
  submitter: Submitter;
}

/** Methods forwarded downstream. */
const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);

/** `Preference-Applied` (RFC 7240) for what was honoured, or undefined. */
function preferenceApplied(respondAsync: boolean, waitMs: number | undefined): string | undefined {
  const wait = waitMs === undefined ? undefined : `wait=${Math.ceil(waitMs / 1000)}`;
  if (!respondAsync) return wait;
  return wait === undefined ? 'respond-async' : `respond-async, ${wait}`;
}

/** The route template of {@link servicesRouter}: also the `route` label of its requests on the fast path. */
export const SERVICES_ROUTE = '/v1/services/:service{/*path}';

/**
 * `ANY /v1/services/:service/*path`: forwards the request through RabbitMQ. Sync by default (waits
 * for the reply); with `Prefer: respond-async` a persistent job answered 202 once the broker
 * confirmed it. An `Idempotency-Key` makes a repeat return the original answer without publishing.
 * This route parses HTTP and writes views; the submission layer does the rest.
 */
export function servicesRouter(handle: ServicesHandler): Router {
  const router = Router();
  router.all(SERVICES_ROUTE, (req, res) => handle(req, res, req.params.service!));
  return router;
}

/** What a services request with this (decoded) service name runs; rejects with the request's {@link GatewayError}. */
export type ServicesHandler = (req: Request, res: Response, service: string) => Promise<void>;

/** The route's handler, for the router above and for the sync hot path that calls it directly (enqueuer/http/fast-path.ts). */
export function servicesHandler(deps: ServicesRouteDeps): ServicesHandler {
  const { config, guard, submitter } = deps;
  const maxDelay = maxDelayMs(deps.topology);

  return async (req, res, service) => {
    guard.authorizeService(req.principal, service);
    // Own properties only: `constructor`, `__proto__` or `toString` are not services.
    const svc = Object.hasOwn(config.services, service) ? config.services[service] : undefined;
    if (!svc) throw new GatewayError('GW_ERR_SERVICE_UNKNOWN', `no service named ${JSON.stringify(service.slice(0, 64))}`);
    if (!METHODS.has(req.method)) throw new GatewayError('GW_ERR_METHOD_NOT_ALLOWED');
    const { path, query } = forwardedTarget(req.originalUrl, `/v1/services/${service}`);
    const prefer = parsePrefer(req.headers.prefer);
    const async = prefer.respondAsync;
    const delayMs = parseDelay(req.headers, Date.now(), maxDelay);
    if (delayMs !== undefined && !async) throw new GatewayError('GW_ERR_DELAY_INVALID', 'a delay applies to async jobs only (send Prefer: respond-async)');
    const priority = parsePriority(req.headers, req.principal, async ? 'async' : 'sync');
    const idempotencyKey = parseIdempotencyKey(req.headers['idempotency-key']);
    // Everything that becomes part of the AMQP message is validated before the key is claimed.
    const forwarded = pickHeaders(req.headers, svc.forwardRequestHeaders);
    assertAmqpContentType(forwarded['content-type']);
    const waitMs = prefer.waitS === undefined ? (async ? undefined : config.defaultWaitMs) : Math.min(prefer.waitS * 1000, config.maxWaitMs);
    const tenant = req.principal.tenant;
    submitter.assertAccepting();
    if (!async || waitMs !== undefined) {
      // The per-tenant cap on requests holding a connection open for an answer (sync, and async
      // with `wait=N`); released when the response ends either way.
      res.once('close', guard.acquireInflight(tenant));
    }
    const body = await readRawBody(req, config.bodyLimitBytes);
    const applied = preferenceApplied(async, prefer.waitS === undefined ? undefined : waitMs);
    if (applied !== undefined) res.setHeader('preference-applied', applied);
    const traceparent = validTraceparent(req.headers.traceparent);
    const request: SubmitRequest = {
      service, svc, method: req.method, path, query, headers: forwarded, body, tenant, requestId: req.id,
      waitMs, delayMs: delayMs ?? 0, priority, idempotencyKey,
      traceparent, tracestate: traceparent ? validTracestate(req.headers.tracestate) : undefined,
      client: res, jobId: undefined, job: undefined,
    };
    let answer: Reply | Accepted;
    try {
      answer = async ? await submitter.submitAsync(request) : await submitter.submitSync(request);
    } finally {
      // Also on a failure: the problem answer names the job, the logs carry its ids.
      if (request.jobId !== undefined) res.setHeader('x-gw-job-id', request.jobId);
      if (request.job !== undefined) res.locals.job = request.job;
    }
    if (!('kind' in answer)) sendReply(res, answer);
    else if (answer.kind === 'finished') sendJobReply(res, answer.reply);
    else sendAccepted(res, answer.job);
  };
}

const forwardedAnswer = {
  description: "the downstream's answer: its status, allow-listed headers and body (sync; or an async job's result with `Prefer: respond-async, wait=N`)",
  headers: {
    'x-gw-job-id': { description: 'the message id (sent downstream as Idempotency-Key)', schema: { type: 'string' as const } },
    'x-request-id': { description: 'the request id', required: true, schema: { type: 'string' as const } },
  },
  content: { '*/*': { schema: z.string().meta({ format: 'binary' }) } },
};

const servicesRequest = {
  params: pathParams({
    service: z.string().describe('a configured service'),
    path: z.string().describe('the path forwarded to the downstream (may contain `/`); the query string is forwarded too'),
  }),
  headers: z.object({
    prefer: z.string().optional().describe('`respond-async` for a 202 job, `wait=N` (seconds) to bound the wait (RFC 7240)'),
    'idempotency-key': z.string().optional().describe('a quoted string; a repeat gets the original answer'),
    'gw-delay-ms': z.string().optional().describe('async only: run no earlier than this many ms from now'),
    'gw-not-before': z.string().optional().describe('async only: run no earlier than this instant (RFC 3339 or HTTP-date)'),
    'gw-priority': z.enum(['normal', 'high']).optional().describe('async only: `high` starts before queued normal jobs of the service (keys with `maxPriority: high`; docs/fairness.md)'),
    'x-request-id': z.string().optional(),
    traceparent: z.string().optional(),
  }),
  body: { content: { '*/*': { schema: z.string().meta({ format: 'binary' }) } }, required: false },
};

/** OpenAPI entries of this router: one per forwarded method (collected by enqueuer/http/openapi.ts). */
export const servicesRouteDocs: RouteDoc[] = (['get', 'post', 'put', 'patch', 'delete'] as const).map((method) => ({
  method,
  path: '/v1/services/{service}/{path}',
  tags: ['services'],
  summary: `${method.toUpperCase()} forwarded to the service through RabbitMQ (sync request-reply, or a 202 job with Prefer: respond-async)`,
  security: bearer,
  request: method === 'get' || method === 'delete' ? { params: servicesRequest.params, headers: servicesRequest.headers } : servicesRequest,
  responses: {
    200: forwardedAnswer,
    202: json(JobSchema, 'accepted: the broker confirmed the persistent job', {
      location: { description: '/v1/jobs/{id}', required: true, schema: { type: 'string' } },
      'x-gw-job-id': { description: 'the job id', required: true, schema: { type: 'string' } },
      'preference-applied': { description: 'the Prefer members honoured', schema: { type: 'string' } },
    }),
    ...problems(...V1_PROBLEMS, 403, 404, 405, 409, 413, 415, 422, 502, 504),
  },
}));
