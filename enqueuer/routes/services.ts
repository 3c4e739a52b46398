import { randomUUID } from 'node:crypto';
import { Router, type Request, type Response } from 'express';
import type { Logger } from 'pino';
import type { ServiceConfig } from '../../shared/config/services.ts';
import { encodeRequest, type ReplyEnvelope, type RequestEnvelope } from '../../shared/envelope.ts';
import type { JobEvent } from '../../shared/events.ts';
import { GatewayError } from '../../shared/errors.ts';
import { maybeDelivered } from '../../shared/amqp/confirm-publisher.ts';
import type { Topology } from '../../shared/topology/topology.ts';
import type { EnqueuerConfig } from '../config.ts';
import type { BreakerBoard } from '../events/breaker-board.ts';
import type { JobEventHub } from '../events/job-event-hub.ts';
import { parseIdempotencyKey, requestFingerprint, type IdempotencyStore } from '../jobs/idempotency-store.ts';
import { answerJob, responseHeaders } from '../jobs/job-answer.ts';
import { queuedRecord, type JobRecord } from '../jobs/job-record.ts';
import { z } from 'zod';
import { bearer, json, pathParams, problems, V1_PROBLEMS, type RouteDoc } from '../http/route-docs.ts';
import { JobSchema, sendAccepted } from '../http/views.ts';
import type { JobStore } from '../jobs/job-store.ts';
import type { DelayedBacklog } from '../jobs/delayed-backlog.ts';
import { endHop, SpanKind, startHop } from '../../shared/tracing.ts';
import { assertAmqpContentType, forwardedTarget, pickHeaders, validTraceparent, validTracestate } from '../http/forward.ts';
import { parseDelay } from '../http/delay.ts';
import { parsePrefer } from '../http/prefer.ts';
import { delayTarget, maxDelayMs } from '../../shared/topology/delay.ts';
import { readRawBody } from '../http/raw-body.ts';
import type { EnqueuerMetrics } from '../metrics.ts';
import type { ReplyRouter } from '../replies.ts';
import type { Guard } from '../security/guard.ts';

export interface ServicesRouteDeps {
  config: EnqueuerConfig;
  topology: Topology;
  replies: ReplyRouter;
  metrics: EnqueuerMetrics;
  logger: Logger;
  jobs: JobStore;
  idempotency: IdempotencyStore;
  /** Delayed jobs accepted and not yet due, counted across replicas (docs/adr/1200-delayed-backlog-bound.md). */
  delayed: DelayedBacklog;
  hub: JobEventHub;
  breakers: BreakerBoard;
  /** Tells the other replicas about a job the broker just confirmed (fire and forget). */
  announceQueued: (e: JobEvent) => void;
  /** The tenant of a request: always the authenticated one (`req.principal`), never a client header. */
  tenantOf: (req: Request) => string;
  /** Authorisation, rate limits and in-flight caps. */
  guard: Guard;
  /** Fails while the enqueuer drains or the broker is out of reach. */
  assertAccepting: () => void;
  /** Tracks a request so a graceful stop waits for it. */
  track: <T>(work: Promise<T>) => Promise<T>;
}

/** Ids of the job a request created, in `res.locals.job`, so the error handler can log them. */
export interface JobLogFields {
  jobId: string;
  requestId: string;
  tenant: string;
  service: string;
  traceId: string;
}

/** Methods forwarded downstream. */
const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);

/** Clock margin past a cut-off sync request's deadline before its Idempotency-Key is freed. */
const KEY_HOLD_MARGIN_MS = 1000;

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * `ANY /v1/services/:service/*path`: forwards the request through RabbitMQ. Sync by default (waits
 * for the reply); with `Prefer: respond-async` a persistent job answered 202 once the broker
 * confirmed it. An `Idempotency-Key` makes a repeat return the original answer without publishing.
 */
export function servicesRouter(deps: ServicesRouteDeps): Router {
  const router = Router();
  const { config, topology, replies, metrics, jobs, idempotency } = deps;
  const claimTtlMs = config.maxWaitMs + config.publishTimeoutMs + 5000;
  const maxDelay = maxDelayMs(topology);
  // Span names and attributes per service, built once (no per-request allocation for them).
  const spans = new Map(Object.keys(config.services).map((service) => [service, {
    name: `${topology.names.workExchange} publish`,
    attributes: Object.freeze({ 'messaging.system': 'rabbitmq', 'messaging.operation.type': 'publish', 'messaging.destination.name': topology.names.workExchange, 'messaging.rabbitmq.destination.routing_key': topology.names.rpcRoutingKey(service), 'gw.service': service }),
  }]));

  router.all('/v1/services/:service{/*path}', async (req, res) => {
    const service = req.params.service!;
    deps.guard.authorizeService(req.principal, service);
    // Own properties only: `constructor`, `__proto__` or `toString` are not services.
    const svc = Object.hasOwn(config.services, service) ? config.services[service] : undefined;
    if (!svc) throw new GatewayError('GW_ERR_SERVICE_UNKNOWN', `no service named ${JSON.stringify(service.slice(0, 64))}`);
    if (!METHODS.has(req.method)) throw new GatewayError('GW_ERR_METHOD_NOT_ALLOWED');
    const { path, query } = forwardedTarget(req.originalUrl, `/v1/services/${service}`);
    const prefer = parsePrefer(req.headers.prefer);
    const mode = prefer.respondAsync ? 'async' : 'sync';
    const delayMs = parseDelay(req.headers, Date.now(), maxDelay);
    if (delayMs !== undefined && mode === 'sync') throw new GatewayError('GW_ERR_DELAY_INVALID', 'a delay applies to async jobs only (send Prefer: respond-async)');
    const idemKey = parseIdempotencyKey(req.headers['idempotency-key']);
    // Everything that becomes part of the AMQP message is validated before the key is claimed.
    const forwarded = pickHeaders(req.headers, svc.forwardRequestHeaders);
    assertAmqpContentType(forwarded['content-type']);
    const waitMs = prefer.waitS === undefined ? (mode === 'sync' ? config.defaultWaitMs : undefined) : Math.min(prefer.waitS * 1000, config.maxWaitMs);
    const tenant = deps.tenantOf(req);
    deps.assertAccepting();
    if (mode === 'sync' || waitMs !== undefined) {
      // The per-tenant cap on requests holding a connection open for an answer (sync, and async
      // with `wait=N`); released when the response ends either way.
      res.once('close', deps.guard.acquireInflight(tenant));
    }
    const body = await readRawBody(req, config.bodyLimitBytes);
    const applied = [...(mode === 'async' ? ['respond-async'] : []), ...(prefer.waitS !== undefined ? [`wait=${Math.ceil(waitMs! / 1000)}`] : [])];
    if (applied.length) res.setHeader('preference-applied', applied.join(', '));

    const fingerprint = idemKey === undefined ? '' : requestFingerprint({ mode, method: req.method, service, path, query, body });
    if (idemKey !== undefined && !(await claimOrReplay(res, service, tenant, idemKey, fingerprint, waitMs, svc))) return;

    // From the claim on, one try: any failure before an answer was sent releases the key, so a
    // corrected retry runs at once instead of waiting for the claim and getting 409.
    let hop: ReturnType<typeof startHop> | undefined;
    let syncDeadline: number | undefined;
    try {
      const now = Date.now();
      const env: RequestEnvelope = {
        jobId: randomUUID(),
        requestId: req.id,
        service,
        mode,
        method: req.method,
        path,
        query,
        headers: forwarded,
        tenant,
        attempt: 1,
        enqueuedAt: now,
        body,
      };
      if (mode === 'sync') syncDeadline = env.deadline = now + waitMs!;
      const clientTraceparent = validTraceparent(req.headers.traceparent);
      const tracestate = clientTraceparent ? validTracestate(req.headers.tracestate) : undefined;
      if (tracestate !== undefined) env.tracestate = tracestate;
      const span = spans.get(service)!;
      hop = startHop(span.name, SpanKind.PRODUCER, clientTraceparent, span.attributes);
      env.traceparent = hop.traceparent;
      res.locals.job = { jobId: env.jobId, requestId: env.requestId, tenant: env.tenant, service, traceId: hop.traceId } satisfies JobLogFields;
      res.setHeader('x-gw-job-id', env.jobId);
      if (mode === 'async') await acceptJob(res, env, waitMs, svc, idemKey, fingerprint, delayMs ?? 0);
      else await callSync(res, env, waitMs!, svc, idemKey, fingerprint);
      endHop(hop);
    } catch (err) {
      if (hop) endHop(hop, (err as GatewayError).code ?? 'error');
      if (idemKey !== undefined && !res.headersSent) {
        const release = (): Promise<void> => idempotency.release(tenant, idemKey).catch((e: unknown) => deps.logger.warn({ err: e, tenant, requestId: req.id }, 'could not release an idempotency key'));
        // A sync request cut off after it was published may still be delivered and run until its
        // deadline: the key stays held until then, so a retry with it cannot make a second call.
        const holdMs = syncDeadline !== undefined && maybeDelivered(err) ? syncDeadline - Date.now() + KEY_HOLD_MARGIN_MS : 0;
        if (holdMs > 0) setTimeout(() => void release(), holdMs).unref();
        else await release();
      }
      throw err;
    }
  });

  /**
   * Claims the key, or answers from what it holds: the original answer for the same request, 422
   * for another request, and for one still in flight waits (polling) up to `idempotencyWaitMs`,
   * then 409. Resolves true when this request owns the key and must run.
   */
  async function claimOrReplay(res: Response, service: string, tenant: string, key: string, fingerprint: string, waitMs: number | undefined, svc: Readonly<ServiceConfig>): Promise<boolean> {
    const deadline = Date.now() + config.idempotencyWaitMs;
    for (;;) {
      const held = await idempotency.claim(tenant, key, fingerprint, claimTtlMs);
      if (!held) return true;
      if (held.fingerprint !== fingerprint) throw new GatewayError('GW_ERR_IDEMPOTENCY_KEY_REUSED');
      const answer = held.answer;
      if (answer?.kind === 'async') {
        res.setHeader('x-gw-job-id', answer.jobId);
        const record = await jobs.get(tenant, answer.jobId);
        if (record) await answerJob(res, deps, record, waitMs, svc);
        // The job store lost it (evicted, expired): the key still names the job, answer as queued.
        else sendAccepted(res, queuedRecord({ id: answer.jobId, tenant, service, createdAt: Date.now(), updatedAt: Date.now() }));
        return false;
      }
      if (answer?.kind === 'sync') {
        res.status(answer.status);
        for (const [name, value] of Object.entries(answer.headers)) res.setHeader(name, value);
        res.setHeader('x-gw-job-id', answer.jobId);
        res.end(Buffer.from(answer.bodyBase64, 'base64'));
        return false;
      }
      if (Date.now() >= deadline || res.destroyed) {
        throw new GatewayError('GW_ERR_IDEMPOTENCY_KEY_IN_USE', undefined, { retryAfterS: 1 });
      }
      await sleep(20);
    }
  }

  /** Publishes a persistent job; 202 (or its result within the wait) only after the broker confirmed. */
  async function acceptJob(res: Response, env: RequestEnvelope, waitMs: number | undefined, svc: Readonly<ServiceConfig>, idemKey: string | undefined, fingerprint: string, delayMs: number): Promise<void> {
    const log = { jobId: env.jobId, requestId: env.requestId, tenant: env.tenant, service: env.service };
    // A delayed job enters through the delay levels and reaches the work queue when due.
    const target = delayTarget(topology, env.service, delayMs);
    if (target.units > 0) {
      // The delay levels are shared by every service and have no x-max-length: the bound is here.
      try {
        await deps.delayed.reserve(env.service, env.tenant, env.jobId, Date.now() + target.delayMs, { maxPerService: svc.work.delayedMaxLength ?? svc.work.maxLength, maxPerTenant: config.maxDelayedPerTenant });
      } catch (err) {
        if ((err as GatewayError).code === 'GW_ERR_DELAYED_BACKLOG_FULL') metrics.delayedRefused.labels(env.service, String((err as GatewayError).extra?.scope)).inc();
        throw err;
      }
      try {
        await deps.track(replies.publish(target.exchange, target.routingKey, env.body, encodeRequest(env), 'async'));
      } catch (err) {
        await deps.delayed.release(env.service, env.tenant, env.jobId).catch((e: unknown) => deps.logger.warn({ err: e, ...log }, 'delayed reservation not released; it expires at its due time'));
        throw err;
      }
    } else {
      await deps.track(replies.publish(target.exchange, target.routingKey, env.body, encodeRequest(env), 'async'));
    }
    metrics.jobsAccepted.labels(env.service).inc();
    const queued: JobEvent = { v: 1, kind: 'job', jobId: env.jobId, tenant: env.tenant, service: env.service, state: 'queued', attempt: 1, at: Date.now(), enqueuedAt: env.enqueuedAt, requestId: env.requestId };
    // From here on the job is accepted: store trouble is logged, never turned into an error answer.
    let record: JobRecord | undefined;
    try {
      record = await jobs.apply(queued);
    } catch (err) {
      deps.logger.error({ err, ...log }, 'accepted job not recorded in the job store; its events will record it');
    }
    deps.announceQueued(queued);
    if (idemKey !== undefined) {
      await idempotency
        .complete(env.tenant, idemKey, { fingerprint, answer: { kind: 'async', jobId: env.jobId } }, config.idempotencyTtlMs)
        .catch((err: unknown) => deps.logger.error({ err, ...log }, 'idempotency answer not stored; duplicates get 409 until the claim expires'));
    }
    record ??= queuedRecord({ id: env.jobId, tenant: env.tenant, service: env.service, createdAt: env.enqueuedAt, updatedAt: queued.at, requestId: env.requestId });
    await answerJob(res, deps, record, waitMs, svc);
  }

  async function callSync(res: Response, env: RequestEnvelope, waitMs: number, svc: Readonly<ServiceConfig>, idemKey: string | undefined, fingerprint: string): Promise<void> {
    const retryAfterS = deps.breakers.openRetryAfterS(env.service);
    if (retryAfterS !== undefined) throw new GatewayError('GW_ERR_BREAKER_OPEN', `circuit of ${env.service} is open`, { retryAfterS });
    const gauge = metrics.syncInflight.labels(env.service);
    gauge.inc();
    let reply: ReplyEnvelope;
    try {
      reply = await deps.track(replies.request(topology.names.workExchange, topology.names.rpcRoutingKey(env.service), env.body, encodeRequest(env, { expirationMs: waitMs }), waitMs));
    } catch (err) {
      if ((err as GatewayError).code === 'GW_ERR_REPLY_TIMEOUT') metrics.replyTimeouts.labels(env.service).inc();
      throw err;
    } finally {
      gauge.dec();
    }
    if (idemKey !== undefined && !reply.error && Number.isInteger(reply.status) && reply.status >= 200 && reply.status <= 599) {
      const headers = Object.fromEntries(responseHeaders(reply.headers, svc));
      const answer = { kind: 'sync' as const, jobId: env.jobId, status: reply.status, headers, bodyBase64: reply.body.toString('base64') };
      await idempotency.complete(env.tenant, idemKey, { fingerprint, answer }, config.idempotencyTtlMs);
    }
    sendReply(res, reply, svc);
  }

  return router;
}

/** Writes the downstream's answer, or the gateway error it carries; a hostile reply becomes a 502. */
export function sendReply(res: Response, reply: ReplyEnvelope, svc: Readonly<ServiceConfig>): void {
  if (reply.error) {
    throw new GatewayError(reply.error.code, reply.error.detail, reply.error.retryAfterS === undefined ? {} : { retryAfterS: reply.error.retryAfterS });
  }
  if (!Number.isInteger(reply.status) || reply.status < 200 || reply.status > 599) {
    throw new GatewayError('GW_ERR_DOWNSTREAM_BAD_RESPONSE', `downstream status ${reply.status}`);
  }
  const headers = responseHeaders(reply.headers, svc);
  res.status(reply.status);
  for (const [name, value] of headers) res.setHeader(name, value);
  res.end(reply.body);
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
