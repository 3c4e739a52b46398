import type { ConsumeMessage } from 'amqplib';
import type { Logger } from 'pino';
import type { ConfirmPublisher } from '../shared/amqp/confirm-publisher.ts';
import { decodeRequest, encodeRequest, type RequestEnvelope } from '../shared/envelope.ts';
import { toJobResult, type JobError, type JobEvent } from '../shared/events.ts';
import { fullJitterDelayMs } from '../shared/backoff.ts';
import { FAILURE_CODE } from '../shared/errors.ts';
import { delayTarget, maxDelayMs } from '../shared/topology/delay.ts';
import type { Lane } from '../shared/topology/names.ts';
import type { Topology } from '../shared/topology/topology.ts';
import { endHop, SpanKind, startHop, traceIdOf } from '../shared/tracing.ts';
import { decide, parseRetryAfterS, type AttemptOutcome } from './classify.ts';
import { DownstreamError, type Downstream, type DownstreamResponse } from './downstream.ts';
import type { DequeuerMetrics } from './metrics.ts';
import type { ServicePacing } from './pacing/service-pacing.ts';
import type { Disposition } from './queue-consumer.ts';
import { outcomeLabel } from './rpc-handler.ts';

export interface WorkHandlerDeps {
  downstream: Downstream;
  topology: Topology;
  /** The confirm publisher of the publish connection, if it is up. */
  publisher: () => ConfirmPublisher | undefined;
  /** Sends a transition to the events stream (batched: shared/amqp/event-batcher.ts). */
  publishEvent: (e: JobEvent) => void;
  metrics: DequeuerMetrics;
  logger: Logger;
  /** Largest result body stored with a job (bytes). */
  maxResultBytes: number;
  /** The breaker refused a call: pause this service's job consumption. */
  onBreakerOpen: () => void;
  /** The service's adaptive limit: told every attempt's outcome. */
  pacing?: ServicePacing;
  /**
   * How long a delivery is held while a copy cannot be confirmed (publish connection down, broker
   * alarm) before it goes back to the queue. Holding beats an instant requeue: on ≤ 4.2 every requeue
   * bumps `x-delivery-count`, so a requeue loop would dead-letter good jobs through the delivery limit.
   * @default COPY_RETRY_MS
   */
  copyRetryMs?: number;
  /** Whether an operator cancelled the job (the cancellation stream, read by every replica): it is acked, never called. */
  isCancelled?: (tenant: string, jobId: string) => boolean;
}

/** The ids every log line about a job carries (`service` comes from the per-service child logger). */
export interface JobLogIds {
  jobId: string;
  requestId: string;
  tenant: string;
  attempt?: number;
  traceId?: string;
}

/**
 * Attempts on delivery: our own header (retry copies carry it +1) plus crash redeliveries of this
 * copy, which the quorum queue counts in `x-delivery-count` (absent on first delivery). `x-death`
 * is never read: 3.13+/4.x do not update an `x-death` a client republished.
 */
export function attemptOf(env: RequestEnvelope, msg: ConsumeMessage): number {
  const deliveries = msg.properties.headers?.['x-delivery-count'];
  const crashes = typeof deliveries === 'number' ? deliveries : msg.fields.redelivered ? 1 : 0;
  return env.attempt + crashes;
}

/**
 * How long a delivery is held by default while its retry copy or give-back cannot be confirmed
 * (part of the longest hold the consumer-timeout check adds up, dequeuer/consumer-timeout.ts).
 */
export const COPY_RETRY_MS = 10_000;

/**
 * Handles one async job delivery. Every path ends in ack (done, or a confirmed retry copy / give-back
 * replaced it), reject (→ the work queue's DLX → DLQ, `x-death` reason `rejected`) or requeue (only
 * when no copy could be confirmed, so nothing is lost).
 */
export function createWorkHandler(deps: WorkHandlerDeps): (msg: ConsumeMessage, lane?: Lane) => Promise<Disposition> {
  const { downstream, topology, metrics, logger } = deps;
  const service = downstream.service;
  const policy = downstream.config.retry;
  const consumed = metrics.consumed.labels(service, 'work');
  const wait = metrics.queueWait.labels(service, 'work');
  const inflight = metrics.inflight.labels(service, 'work');
  const duration = metrics.downstreamDuration.labels(service);
  const queue = topology.names.workQueue(service);
  const processSpan = { name: `${queue} process`, attributes: Object.freeze({ 'messaging.system': 'rabbitmq', 'messaging.operation.type': 'process', 'messaging.destination.name': queue, 'gw.service': service }) };
  const callSpan = { name: `${service} call`, attributes: Object.freeze({ 'gw.service': service, 'server.address': new URL(downstream.config.url).host }) };

  const emit = (env: RequestEnvelope, _ids: JobLogIds, event: Omit<JobEvent, 'v' | 'kind' | 'jobId' | 'tenant' | 'service' | 'at'>): void => {
    const e: JobEvent = { v: 1, kind: 'job', jobId: env.jobId, tenant: env.tenant, service, at: Date.now(), enqueuedAt: env.enqueuedAt, requestId: env.requestId, ...event };
    if (env.traceparent) e.traceparent = env.traceparent;
    deps.publishEvent(e);
  };

  // A function, not an inline comparison: the state changes while the call is awaited.
  const breakerOpen = (): boolean => downstream.state === 'open';

  const maxDelay = maxDelayMs(topology);
  const copyRetryMs = deps.copyRetryMs ?? COPY_RETRY_MS;

  /**
   * Publishes a copy (retry or give-back) through the delay levels and resolves true once the broker
   * confirmed it; retries with backoff for up to `copyRetryMs` while holding the delivery.
   */
  const republish = async (copy: RequestEnvelope, ids: JobLogIds, delayMs: number, kind: 'retry' | 'giveback', lane: Lane): Promise<boolean> => {
    const { exchange, routingKey } = delayTarget(topology, service, Math.min(delayMs, maxDelay), lane);
    const giveUpAt = Date.now() + copyRetryMs;
    for (let attempt = 0; ; attempt++) {
      const publisher = deps.publisher();
      try {
        if (!publisher) throw new Error('publish connection down');
        await publisher.publish(exchange, routingKey, copy.body, encodeRequest(copy), kind);
        return true;
      } catch (err) {
        const waitMs = fullJitterDelayMs(attempt, 100, 2000, 0.5);
        if (Date.now() + waitMs > giveUpAt) {
          logger.warn({ err, ...ids, kind }, 'copy not confirmed; delivery goes back to the queue');
          return false;
        }
        await new Promise((resolve) => setTimeout(resolve, waitMs));
      }
    }
  };

  /**
   * The breaker refused the call: not an attempt. The job goes back as a fresh copy at the tail of
   * its lane (no delivery count churns) carrying the attempts already spent, crashes included.
   */
  const giveBack = async (env: RequestEnvelope, ids: JobLogIds, attempt: number, lane: Lane): Promise<Disposition> => {
    metrics.downstreamRequests.inc({ service, outcome: 'breaker_open' });
    deps.onBreakerOpen();
    return (await republish({ ...env, attempt }, ids, 0, 'giveback', lane)) ? 'ack' : 'requeue';
  };

  // Copies go back to the lane the job came from (its tenant's, or high).
  return async (msg, lane = 0) => {
    consumed.inc();
    let env: RequestEnvelope;
    try {
      env = decodeRequest(msg);
    } catch (err) {
      logger.warn({ err, messageId: msg.properties.messageId }, 'undecodable job dead-lettered');
      metrics.deadLetters.inc({ service, reason: 'undecodable' });
      return 'reject';
    }
    const attempt = attemptOf(env, msg);
    if (attempt === env.attempt && env.attempt === 1) wait.observe(Math.max(0, Date.now() - env.enqueuedAt) / 1000);
    if (attempt > policy.maxAttempts) {
      const ids: JobLogIds = { jobId: env.jobId, requestId: env.requestId, tenant: env.tenant, attempt };
      const traceId = traceIdOf(env.traceparent);
      if (traceId) ids.traceId = traceId;
      logger.warn(ids, 'attempts spent through redeliveries (worker crashed while holding it): dead-lettering');
      emit(env, ids, { state: 'dead', attempt, error: { code: FAILURE_CODE.redelivered, message: 'the worker stopped while processing this job too often' } });
      metrics.deadLetters.inc({ service, reason: 'exhausted' });
      metrics.dead.inc({ service });
      return 'reject';
    }

    const consume = startHop(processSpan.name, SpanKind.CONSUMER, env.traceparent, processSpan.attributes);
    const ids: JobLogIds = { jobId: env.jobId, requestId: env.requestId, tenant: env.tenant, attempt, traceId: consume.traceId };
    let disposition: Disposition = 'reject';
    try {
      disposition = await attemptJob(env, ids, attempt, consume.traceparent, lane);
      return disposition;
    } finally {
      endHop(consume, disposition === 'reject' ? 'dead-lettered' : undefined);
    }
  };

  async function attemptJob(env: RequestEnvelope, ids: JobLogIds, attempt: number, parent: string, lane: Lane): Promise<Disposition> {
    if (deps.isCancelled?.(env.tenant, env.jobId)) {
      // Recorded `cancelled` by the enqueuer already; said again for a replica that missed it.
      emit(env, ids, { state: 'cancelled', attempt });
      metrics.cancelledSkipped.inc({ service });
      logger.info(ids, 'job cancelled by an operator: acked without calling the downstream');
      return 'ack';
    }
    if (downstream.state === 'open') return giveBack(env, ids, attempt, lane);
    const probe = downstream.state === 'half-open';
    metrics.attempts.inc({ service });
    // Attempt 1 also says the job was queued: the enqueuer's `queued` can reach the stream after this.
    emit(env, ids, attempt === 1 ? { state: 'running', attempt, queuedAt: env.enqueuedAt } : { state: 'running', attempt });
    inflight.inc();
    const started = process.hrtime.bigint();
    const startedAt = Date.now();
    const paced = deps.pacing?.begin();
    const call = startHop(callSpan.name, SpanKind.CLIENT, parent, callSpan.attributes);
    let outcome: AttemptOutcome;
    let response: DownstreamResponse | undefined;
    let error: JobError | undefined;
    try {
      response = await downstream.call(env, downstream.config.timeoutMs, call.traceparent);
      endHop(call);
      outcome = { kind: 'response', status: response.status, ...retryAfter(response) };
      metrics.downstreamRequests.inc({ service, outcome: outcomeLabel(response.status) });
    } catch (err) {
      const de = err instanceof DownstreamError ? err : new DownstreamError('network', String(err), { cause: err });
      endHop(call, de.kind);
      if (de.kind === 'breaker_open') {
        deps.pacing?.end(paced);
        return giveBack(env, ids, attempt, lane);
      }
      response = de.response;
      outcome = response ? { kind: 'response', status: response.status, ...retryAfter(response) } : { kind: 'failure', failure: de.kind === 'timeout' ? 'timeout' : de.kind === 'bad_response' ? 'bad_response' : 'network' };
      error = { code: FAILURE_CODE[de.kind], message: de.message, ...(response ? { status: response.status } : {}) };
      metrics.downstreamRequests.inc({ service, outcome: outcomeLabel(response?.status, response ? undefined : de.kind) });
    } finally {
      inflight.dec();
      duration.observe(Number(process.hrtime.bigint() - started) / 1e9);
    }

    deps.pacing?.record(outcome, startedAt, paced);
    const decision = decide(outcome, attempt, policy, Math.random, { probe, openAfter: breakerOpen() });
    const result = response ? toJobResult(response, deps.maxResultBytes) : undefined;
    if (!error && outcome.kind === 'response' && decision.action !== 'succeed') {
      error = { code: FAILURE_CODE.http_status, message: `downstream answered ${outcome.status}`, status: outcome.status };
    }
    switch (decision.action) {
      case 'handBack':
        // The downstream is down, not this job: back to the queue with the attempt it had.
        metrics.handedBack.inc({ service });
        logger.info({ ...ids, probe, error: error?.message }, 'downstream down (breaker open): job handed back, no attempt spent');
        deps.onBreakerOpen();
        return (await republish({ ...env, attempt }, ids, 0, 'giveback', lane)) ? 'ack' : 'requeue';
      case 'succeed':
        emit(env, ids, { state: 'succeeded', attempt, ...(result ? { result } : {}) });
        metrics.succeeded.inc({ service });
        return 'ack';
      case 'retry': {
        const copy: RequestEnvelope = { ...env, attempt: attempt + 1, lastError: error?.message ?? 'failed', firstFailedAt: env.firstFailedAt ?? Date.now() };
        // Announced before the copy is published: a short delay can deliver the copy (and emit its
        // `running`) before the confirm returns, and the event stream must keep attempt order. If the
        // publish fails the job is requeued and runs again under this attempt; the store keeps the
        // later of the two states.
        emit(env, ids, { state: 'retrying', attempt, nextAttemptAt: Date.now() + decision.delayMs, ...(error ? { error } : {}), ...(result ? { result } : {}) });
        if (!(await republish(copy, ids, decision.delayMs, 'retry', lane))) return 'requeue';
        metrics.retries.inc({ service });
        logger.info({ ...ids, delayMs: decision.delayMs, error: error?.message, ...bodyField(response) }, 'attempt failed; retry scheduled');
        return 'ack';
      }
      case 'dead':
        emit(env, ids, { state: decision.reason === 'permanent' ? 'failed' : 'dead', attempt, ...(error ? { error } : {}), ...(result ? { result } : {}) });
        metrics.deadLetters.inc({ service, reason: decision.reason });
        metrics.dead.inc({ service });
        logger.warn({ ...ids, reason: decision.reason, error: error?.message, ...bodyField(response) }, 'job dead-lettered');
        return 'reject';
    }
  }
}

/**
 * The start of a failed downstream answer's body under the key `body`, which the logger redacts
 * unless LOG_BODIES=true (shared/logger.ts).
 */
export function bodyField(response: DownstreamResponse | undefined): { body?: string } {
  return response && response.body.length > 0 ? { body: response.body.toString('utf8', 0, Math.min(response.body.length, 1024)) } : {};
}

function retryAfter(res: DownstreamResponse): { retryAfterS?: number } {
  const s = parseRetryAfterS(res.headers['retry-after']);
  return s === undefined ? {} : { retryAfterS: s };
}
