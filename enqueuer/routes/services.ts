import { randomUUID } from 'node:crypto';
import { validateHeaderName, validateHeaderValue } from 'node:http';
import { Router, type Request, type Response } from 'express';
import type { Logger } from 'pino';
import type { ServiceConfig } from '../../shared/config/services.ts';
import { encodeRequest, type ReplyEnvelope, type RequestEnvelope } from '../../shared/envelope.ts';
import { GatewayError } from '../../shared/errors.ts';
import type { Topology } from '../../shared/topology/topology.ts';
import type { EnqueuerConfig } from '../config.ts';
import { forwardedTarget, pickHeaders, validTraceparent } from '../http/forward.ts';
import { parsePrefer } from '../http/prefer.ts';
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
  /** The tenant of a request: always the authenticated one (`req.principal`), never a client header. */
  tenantOf: (req: Request) => string;
  /** Authorisation, rate limits and in-flight caps. */
  guard: Guard;
  /** Fails while the enqueuer drains or the broker is out of reach. */
  assertAccepting: () => void;
  /** Tracks a request so a graceful stop waits for it. */
  track: <T>(work: Promise<T>) => Promise<T>;
}

interface ForwardTarget {
  service: string;
  svc: Readonly<ServiceConfig>;
  path: string;
  query: string;
  waitMs: number;
  waitApplied: boolean;
  tenant: string;
}

/** Methods forwarded downstream. */
const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);

/** `ANY /v1/services/:service/*path`: forwards the request through RabbitMQ and answers with the reply. */
export function servicesRouter(deps: ServicesRouteDeps): Router {
  const router = Router();
  const { config, topology, replies, metrics } = deps;

  router.all('/v1/services/:service{/*path}', async (req, res) => {
    const service = req.params.service!;
    deps.guard.authorizeService(req.principal, service);
    const svc = config.services[service];
    if (!svc) throw new GatewayError('GW_ERR_SERVICE_UNKNOWN', `no service named ${JSON.stringify(service.slice(0, 64))}`);
    if (!METHODS.has(req.method)) throw new GatewayError('GW_ERR_METHOD_NOT_ALLOWED');
    const { path, query } = forwardedTarget(req.originalUrl, `/v1/services/${service}`);
    const prefer = parsePrefer(req.headers.prefer);
    const waitMs = prefer.waitS === undefined ? config.defaultWaitMs : Math.min(prefer.waitS * 1000, config.maxWaitMs);
    deps.assertAccepting();
    const tenant = deps.tenantOf(req);
    const release = deps.guard.acquireInflight(tenant);
    try {
      await forward(req, res, { service, svc, path, query, waitMs, waitApplied: prefer.waitS !== undefined, tenant });
    } finally {
      release();
    }
  });

  async function forward(req: Request, res: Response, t: ForwardTarget): Promise<void> {
    const { service, svc, path, query, waitMs, waitApplied, tenant } = t;
    const body = await readRawBody(req, config.bodyLimitBytes);
    const now = Date.now();
    const env: RequestEnvelope = {
      jobId: randomUUID(),
      requestId: req.id,
      service,
      mode: 'sync',
      method: req.method,
      path,
      query,
      headers: pickHeaders(req.headers, svc.forwardRequestHeaders),
      tenant,
      deadline: now + waitMs,
      attempt: 1,
      enqueuedAt: now,
      body,
    };
    const traceparent = validTraceparent(req.headers.traceparent);
    if (traceparent) {
      env.traceparent = traceparent;
      if (typeof req.headers.tracestate === 'string') env.tracestate = req.headers.tracestate.slice(0, 512);
    }
    if (waitApplied) res.setHeader('preference-applied', `wait=${Math.ceil(waitMs / 1000)}`);
    res.setHeader('x-gw-job-id', env.jobId);

    const gauge = metrics.syncInflight.labels(service);
    gauge.inc();
    try {
      const reply = await deps.track(
        replies.request(topology.names.workExchange, topology.names.rpcRoutingKey(service), body, encodeRequest(env, { expirationMs: waitMs }), waitMs),
      );
      sendReply(res, reply, svc);
    } catch (err) {
      if ((err as GatewayError).code === 'GW_ERR_REPLY_TIMEOUT') metrics.replyTimeouts.labels(service).inc();
      throw err;
    } finally {
      gauge.dec();
    }
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
  const headers: Array<[string, string]> = [];
  for (const [name, value] of Object.entries(reply.headers)) {
    if (!svc.forwardResponseHeaders.includes(name)) continue;
    try {
      validateHeaderName(name);
      validateHeaderValue(name, value);
    } catch {
      throw new GatewayError('GW_ERR_DOWNSTREAM_BAD_RESPONSE', `downstream header ${JSON.stringify(name.slice(0, 64))} is invalid`);
    }
    headers.push([name, value]);
  }
  res.status(reply.status);
  for (const [name, value] of headers) res.setHeader(name, value);
  res.end(reply.body);
}
