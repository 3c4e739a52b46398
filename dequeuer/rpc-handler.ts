import type { ConsumeMessage } from 'amqplib';
import type { Logger } from 'pino';
import { decodeRequest, type ReplyEnvelope, type RequestEnvelope } from '../shared/envelope.ts';
import { FAILURE_CODE } from '../shared/errors.ts';
import { endHop, SpanKind, startHop, traceIdOf } from '../shared/tracing.ts';
import { DownstreamError, isConnectFailure, type Downstream, type DownstreamFailure } from './downstream.ts';
import type { DequeuerMetrics } from './metrics.ts';
import type { Disposition } from './queue-consumer.ts';


/** Least time left before a sync request's deadline for its downstream call to be started (ms). */
export const MIN_SYNC_CALL_MS = 50;
/** Sends a reply on direct reply-to; best effort (replies are at-most-once by design). */
export type ReplySender = (replyTo: string, correlationId: string, reply: ReplyEnvelope) => void;

export interface RpcHandlerDeps {
  downstream: Downstream;
  reply: ReplySender;
  metrics: DequeuerMetrics;
  logger: Logger;
  /** The rpc queue's name (span names). */
  queue: string;
  /**
   * Whether the requester behind a direct reply-to address is still there. A request whose client
   * already had its 503 (the enqueuer's channel closed) must not reach the downstream.
   */
  requesterAlive?: (replyTo: string) => Promise<boolean>;
}

/** Outcome label of a downstream call for metrics. */
export function outcomeLabel(status: number | undefined, failure?: DownstreamFailure): string {
  if (failure === 'timeout') return 'timeout';
  if (failure === 'breaker_open') return 'breaker_open';
  if (failure === 'network' || failure === 'refused' || failure === 'bad_response') return 'network_error';
  if (status !== undefined && status >= 500) return 'server_error';
  if (status !== undefined && status >= 400) return 'client_error';
  return 'success';
}

/** Turns a failed call into the reply the waiting client gets. */
export function failureReply(err: DownstreamError): ReplyEnvelope {
  if (err.kind === 'server_error' && err.response) return err.response;
  return {
    status: 0,
    headers: {},
    body: Buffer.alloc(0),
    error: { code: FAILURE_CODE[err.kind], detail: err.message, ...(err.retryAfterS === undefined ? {} : { retryAfterS: err.retryAfterS }) },
  };
}

/**
 * What a sync caller is told about a failed call. Nothing answered and the breaker is open now (this
 * call was the half-open probe, or the failure that opened it): what every other caller gets, 503
 * breaker-open. A refused connection (nothing was sent, so a retry is safe) while the breaker is
 * still closed: 503 refused with `Retry-After: 1`, not a 502; those are the calls of the refused
 * streak that opens the breaker (the 60 s outage run had 2-3 such 502s at the opening).
 */
export function syncFailure(de: DownstreamError, downstream: Pick<Downstream, 'state' | 'retryAfterS' | 'service'>): DownstreamError {
  if ((de.kind === 'network' || de.kind === 'timeout') && downstream.state === 'open') {
    return new DownstreamError('breaker_open', `circuit open for ${downstream.service}`, { retryAfterS: downstream.retryAfterS() });
  }
  if (de.kind === 'network' && isConnectFailure(de.cause)) {
    return new DownstreamError('refused', `${downstream.service} refused the connection: ${de.message}`, { retryAfterS: 1, cause: de.cause });
  }
  return de;
}

/**
 * Handles one sync request: skip it if its deadline passed (nobody waits any more), else call the
 * downstream with a timeout no longer than the remaining deadline and reply. Always acks: a sync
 * request is tried once and its outcome goes to the waiting client, never to a DLQ.
 */
export function createRpcHandler(deps: RpcHandlerDeps): (msg: ConsumeMessage) => Promise<Disposition> {
  const { downstream, metrics, logger } = deps;
  const service = downstream.service;
  const consumed = metrics.consumed.labels(service, 'rpc');
  const wait = metrics.queueWait.labels(service, 'rpc');
  const inflight = metrics.inflight.labels(service, 'rpc');
  const expired = metrics.expired.labels(service);
  const duration = metrics.downstreamDuration.labels(service);
  // Counter children by outcome, resolved once: `inc({ service, outcome })` hashes its labels per call.
  const outcomes = new Map<string, { inc(): void }>();
  const countOutcome = (outcome: string): void => {
    let child = outcomes.get(outcome);
    if (!child) outcomes.set(outcome, (child = metrics.downstreamRequests.labels(service, outcome)));
    child.inc();
  };
  const processSpan = { name: `${deps.queue} process`, attributes: Object.freeze({ 'messaging.system': 'rabbitmq', 'messaging.operation.type': 'process', 'messaging.destination.name': deps.queue, 'gw.service': service }) };
  const callSpan = { name: `${service} call`, attributes: Object.freeze({ 'gw.service': service, 'server.address': new URL(downstream.config.url).host }) };

  /** A request too close to (or past) its deadline: nobody will read its answer. */
  const skipExpired = (env: RequestEnvelope): 'ack' => {
    expired.inc();
    logger.debug({ jobId: env.jobId, requestId: env.requestId, tenant: env.tenant, attempt: env.attempt, traceId: traceIdOf(env.traceparent) }, 'sync request expired before processing');
    return 'ack';
  };

  return async (msg) => {
    consumed.inc();
    const replyTo = msg.properties.replyTo as string | undefined;
    const correlationId = (msg.properties.correlationId ?? msg.properties.messageId) as string | undefined;
    let env: RequestEnvelope;
    try {
      env = decodeRequest(msg);
    } catch (err) {
      logger.warn({ err, messageId: msg.properties.messageId }, 'undecodable sync request dropped');
      if (replyTo && correlationId) {
        deps.reply(replyTo, correlationId, { status: 0, headers: {}, body: Buffer.alloc(0), error: { code: 'GW_ERR_BAD_REQUEST', detail: 'undecodable request message' } });
      }
      return 'ack';
    }
    const now = Date.now();
    wait.observe(Math.max(0, now - env.enqueuedAt) / 1000);
    const remainingMs = (env.deadline ?? now + downstream.config.timeoutMs) - now;
    if (remainingMs < MIN_SYNC_CALL_MS) return skipExpired(env);
    if (replyTo && deps.requesterAlive && !(await deps.requesterAlive(replyTo))) {
      metrics.requesterGone.inc({ service });
      logger.info({ jobId: env.jobId, requestId: env.requestId, tenant: env.tenant, attempt: env.attempt, traceId: traceIdOf(env.traceparent) }, 'sync request skipped: its requester is gone (reply channel closed)');
      return 'ack';
    }
    // The requester check is a broker round trip: on a loaded machine the deadline can pass during it
    // (F4c saw 4 calls reach the downstream after their requests' 504), so it is checked again.
    // A call started in the deadline's last moments answers after the enqueuer's 504: it would only
    // load the downstream (F4c, whole stack in one loaded process: calls started a few ms before the
    // deadline arrived 40-50 ms after it). Below MIN_SYNC_CALL_MS left, it is not started.
    const callMs = Math.min(downstream.config.timeoutMs, remainingMs - (Date.now() - now));
    if (callMs < MIN_SYNC_CALL_MS) return skipExpired(env);
    inflight.inc();
    const started = process.hrtime.bigint();
    const consume = startHop(processSpan.name, SpanKind.CONSUMER, env.traceparent, processSpan.attributes);
    const call = startHop(callSpan.name, SpanKind.CLIENT, consume.traceparent, callSpan.attributes);
    let reply: ReplyEnvelope;
    try {
      const res = await downstream.call(env, callMs, call.traceparent);
      countOutcome(outcomeLabel(res.status));
      endHop(call);
      reply = res;
    } catch (err) {
      const de = err instanceof DownstreamError ? err : new DownstreamError('network', String(err), { cause: err });
      countOutcome(outcomeLabel(de.response?.status, de.kind === 'server_error' ? undefined : de.kind));
      endHop(call, de.kind);
      if (de.kind !== 'server_error' && de.kind !== 'breaker_open') {
        const ids = { jobId: env.jobId, requestId: env.requestId, tenant: env.tenant, attempt: env.attempt, traceId: consume.traceId };
        logger.warn({ ...ids, failure: de.kind, err: de.message }, 'downstream call failed');
      }
      reply = failureReply(syncFailure(de, downstream));
    } finally {
      if (downstream.state !== 'open') duration.observe(Number(process.hrtime.bigint() - started) / 1e9);
      inflight.dec();
      endHop(consume);
    }
    if (replyTo) deps.reply(replyTo, env.jobId, reply);
    return 'ack';
  };
}
