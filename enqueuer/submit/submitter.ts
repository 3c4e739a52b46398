import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { maybeDelivered } from '../../shared/amqp/confirm-publisher.ts';
import { encodeRequest, type Mode, type ReplyEnvelope, type RequestEnvelope } from '../../shared/envelope.ts';
import { GatewayError } from '../../shared/errors.ts';
import type { JobEvent } from '../../shared/events.ts';
import { delayTarget } from '../../shared/topology/delay.ts';
import { jobLane, type Topology } from '../../shared/topology/topology.ts';
import { endHop, SpanKind, startHop, type TraceHop } from '../../shared/tracing.ts';
import type { EnqueuerConfig } from '../config.ts';
import type { BreakerBoard } from '../events/breaker-board.ts';
import type { JobEventHub } from '../events/job-event-hub.ts';
import type { JobEvents } from '../events/job-events.ts';
import { requestFingerprint } from '../jobs/idempotency-store.ts';
import { queuedRecord, type JobRecord } from '../jobs/job-record.ts';
import type { Stores } from '../jobs/stores.ts';
import type { EnqueuerMetrics } from '../metrics.ts';
import type { ReplyRouter } from '../replies.ts';
import type { Admission } from './admission.ts';
import { answerJob, responseHeaders, syncReply } from './answers.ts';
import type { Accepted, Reply, SubmitRequest } from './types.ts';

export type SubmitterConfig = Pick<EnqueuerConfig, 'maxWaitMs' | 'publishTimeoutMs' | 'idempotencyWaitMs' | 'idempotencyTtlMs' | 'maxDelayedPerTenant' | 'services' | 'syncEnvelopeVersion'>;

export interface SubmitterOptions {
  config: SubmitterConfig;
  topology: Topology;
  replies: ReplyRouter;
  stores: Stores;
  hub: JobEventHub;
  breakers: BreakerBoard;
  jobEvents: JobEvents;
  admission: Admission;
  metrics: EnqueuerMetrics;
  logger: Logger;
  /** Told each accepted job (the dashboard keeps its forwarded request, without the body). */
  onAccepted?: (env: RequestEnvelope, notBefore: number | undefined) => void;
}

/** Clock margin past a cut-off sync request's deadline before its Idempotency-Key is freed. */
const KEY_HOLD_MARGIN_MS = 1000;

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * The submission layer: turns a parsed request into a message on the broker and an answer. Owns the
 * envelope and its publish span, the choice of exchange (rpc, work, delay levels), publishing with
 * confirms, the job store's `queued` record and its announcement, and the Idempotency-Key (claim,
 * replay, completion, release). Knows nothing of HTTP: the route parses, this answers a
 * {@link Reply} or an {@link Accepted}, the route writes the view (docs/adr/1301-submission-layer.md).
 */
export class Submitter {
  #o: SubmitterOptions;
  #claimTtlMs: number;
  /** Span names and attributes per service, built once (no per-request allocation for them). */
  #spans: Map<string, { name: string; attributes: Readonly<Record<string, string>> }>;
  /** Per service: the rpc routing key and the `gw_sync_inflight` child, resolved once (docs/adr/1402). */
  #rpc: Map<string, { routingKey: string; inflight: { inc(): void; dec(): void } }>;

  constructor(o: SubmitterOptions) {
    this.#o = o;
    const { config, topology } = o;
    this.#claimTtlMs = config.maxWaitMs + config.publishTimeoutMs + 5000;
    this.#rpc = new Map(Object.keys(config.services).map((service) => [service, { routingKey: topology.names.rpcRoutingKey(service), inflight: o.metrics.syncInflight.labels(service) }]));
    this.#spans = new Map(Object.keys(config.services).map((service) => [service, {
      name: `${topology.names.workExchange} publish`,
      attributes: Object.freeze({ 'messaging.system': 'rabbitmq', 'messaging.operation.type': 'publish', 'messaging.destination.name': topology.names.workExchange, 'messaging.rabbitmq.destination.routing_key': topology.names.rpcRoutingKey(service), 'gw.service': service }),
    }]));
  }

  /** Fails (typed 503) while the enqueuer drains or the broker cannot take a publish: checked before the body is read. */
  assertAccepting(): void {
    this.#o.admission.assertAccepting();
  }

  /**
   * Request-reply: the downstream's answer (or, for a repeated Idempotency-Key, the original one).
   * Publishes to the rpc queue and waits for the reply on direct reply-to; an open circuit sheds at
   * once. Written out here, not through a shared async step, so the hot path awaits only the body
   * (in the route) and the reply.
   */
  async submitSync(r: SubmitRequest): Promise<Reply> {
    const key = r.idempotencyKey;
    const claim = key === undefined ? '' : await this.#claimOrReplay(r, key, 'sync');
    if (typeof claim !== 'string') return claim as Reply;
    const fingerprint = claim;
    const { breakers, metrics, admission, replies, topology, stores, config } = this.#o;
    let hop: TraceHop | undefined;
    let deadline: number | undefined;
    try {
      hop = this.#hop(r);
      const env = this.#envelope(r, 'sync', hop);
      deadline = env.deadline;
      const retryAfterS = breakers.openRetryAfterS(env.service);
      if (retryAfterS !== undefined) throw new GatewayError('GW_ERR_BREAKER_OPEN', `circuit of ${env.service} is open`, { retryAfterS });
      const waitMs = r.waitMs!;
      const rpc = this.#rpc.get(env.service)!;
      const gauge = rpc.inflight;
      gauge.inc();
      let reply: ReplyEnvelope;
      try {
        reply = await admission.track(replies.request(topology.names.workExchange, rpc.routingKey, env.body, encodeRequest(env, { expirationMs: waitMs, syncVersion: config.syncEnvelopeVersion }), waitMs));
      } catch (err) {
        if ((err as GatewayError).code === 'GW_ERR_REPLY_TIMEOUT') metrics.replyTimeouts.labels(env.service).inc();
        throw err;
      } finally {
        gauge.dec();
      }
      if (key !== undefined && !reply.error && Number.isInteger(reply.status) && reply.status >= 200 && reply.status <= 599) {
        const headers = Object.fromEntries(responseHeaders(reply.headers, r.svc));
        const answer = { kind: 'sync' as const, jobId: env.jobId, status: reply.status, headers, bodyBase64: reply.body.toString('base64') };
        await stores.idempotency.complete(env.tenant, key, { fingerprint, answer }, config.idempotencyTtlMs);
      }
      const answer = syncReply(reply, r.svc);
      endHop(hop);
      return answer;
    } catch (err) {
      await this.#failed(r, hop, err, deadline);
      throw err;
    }
  }

  /** A persistent job, answered once the broker confirmed it (its result instead when it finished within `waitMs`). */
  async submitAsync(r: SubmitRequest): Promise<Accepted> {
    const key = r.idempotencyKey;
    const claim = key === undefined ? '' : await this.#claimOrReplay(r, key, 'async');
    if (typeof claim !== 'string') return claim as Accepted;
    const fingerprint = claim;
    let hop: TraceHop | undefined;
    try {
      hop = this.#hop(r);
      const answer = await this.#acceptJob(r, this.#envelope(r, 'async', hop), fingerprint);
      endHop(hop);
      return answer;
    } catch (err) {
      await this.#failed(r, hop, err, undefined);
      throw err;
    }
  }

  /** The publish span, continuing the client's trace context. */
  #hop(r: SubmitRequest): TraceHop {
    const span = this.#spans.get(r.service)!;
    return startHop(span.name, SpanKind.PRODUCER, r.traceparent, span.attributes);
  }

  /** The message of a new job (sync: with its deadline); tells the request the job's ids. */
  #envelope(r: SubmitRequest, mode: Mode, hop: TraceHop): RequestEnvelope {
    const now = Date.now();
    const env: RequestEnvelope = {
      jobId: randomUUID(),
      requestId: r.requestId,
      service: r.service,
      mode,
      method: r.method,
      path: r.path,
      query: r.query,
      headers: r.headers,
      tenant: r.tenant,
      attempt: 1,
      enqueuedAt: now,
      ...(r.priority === 'high' ? { priority: 'high' as const } : {}),
      body: r.body,
    };
    if (mode === 'sync') env.deadline = now + r.waitMs!;
    if (r.tracestate !== undefined) env.tracestate = r.tracestate;
    env.traceparent = hop.traceparent;
    r.jobId = env.jobId;
    r.job = { jobId: env.jobId, requestId: env.requestId, tenant: env.tenant, service: r.service, traceId: hop.traceId };
    return env;
  }

  /**
   * Ends the span with the error. From the claim on, one try: any failure before an answer releases the key, so a corrected retry
   * runs at once instead of waiting for the claim and getting 409. A sync request cut off after it
   * was published may still be delivered and run until its deadline: the key stays held until then,
   * so a retry with it cannot make a second call.
   */
  async #failed(r: SubmitRequest, hop: TraceHop | undefined, err: unknown, syncDeadline: number | undefined): Promise<void> {
    if (hop) endHop(hop, (err as GatewayError).code ?? 'error');
    const key = r.idempotencyKey;
    if (key === undefined) return;
    const { tenant, requestId } = r;
    const release = (): Promise<void> => this.#o.stores.idempotency.release(tenant, key).catch((e: unknown) => this.#o.logger.warn({ err: e, tenant, requestId }, 'could not release an idempotency key'));
    const holdMs = syncDeadline !== undefined && maybeDelivered(err) ? syncDeadline - Date.now() + KEY_HOLD_MARGIN_MS : 0;
    if (holdMs > 0) setTimeout(() => void release(), holdMs).unref();
    else await release();
  }

  /**
   * Claims the key, or answers from what it holds: the original answer for the same request, 422
   * for another request, and for one still in flight waits (polling) up to `idempotencyWaitMs`,
   * then 409. Resolves the request's fingerprint when this request owns the key and must run.
   */
  async #claimOrReplay(r: SubmitRequest, key: string, mode: Mode): Promise<Reply | Accepted | string> {
    const { stores, config } = this.#o;
    const fingerprint = requestFingerprint({ mode, method: r.method, service: r.service, path: r.path, query: r.query, body: r.body });
    const { tenant, service } = r;
    const deadline = Date.now() + config.idempotencyWaitMs;
    for (;;) {
      const held = await stores.idempotency.claim(tenant, key, fingerprint, this.#claimTtlMs);
      if (!held) return fingerprint;
      if (held.fingerprint !== fingerprint) throw new GatewayError('GW_ERR_IDEMPOTENCY_KEY_REUSED');
      const answer = held.answer;
      if (answer?.kind === 'async') {
        r.jobId = answer.jobId;
        const record = await stores.jobs.get(tenant, answer.jobId);
        if (record) return this.#answerJob(r, record);
        // The job store lost it (evicted, expired): the key still names the job, answer as queued.
        return { kind: 'accepted', job: queuedRecord({ id: answer.jobId, tenant, service, createdAt: Date.now(), updatedAt: Date.now() }) };
      }
      if (answer?.kind === 'sync') {
        r.jobId = answer.jobId;
        return { status: answer.status, headers: Object.entries(answer.headers), body: Buffer.from(answer.bodyBase64, 'base64') };
      }
      if (Date.now() >= deadline || r.client.destroyed) {
        throw new GatewayError('GW_ERR_IDEMPOTENCY_KEY_IN_USE', undefined, { retryAfterS: 1 });
      }
      await sleep(20);
    }
  }

  #answerJob(r: SubmitRequest, record: JobRecord): Promise<Accepted> {
    const { stores, hub } = this.#o;
    return answerJob({ hub, jobs: stores.jobs, record, waitMs: r.waitMs, svc: r.svc, client: r.client });
  }

  /** Publishes a persistent job; answers only after the broker confirmed it. */
  async #acceptJob(r: SubmitRequest, env: RequestEnvelope, fingerprint: string): Promise<Accepted> {
    const { topology, replies, stores, metrics, config, logger, admission } = this.#o;
    const log = { jobId: env.jobId, requestId: env.requestId, tenant: env.tenant, service: env.service };
    // A delayed job enters through the delay levels and reaches its lane (tenant, priority) when due.
    const target = delayTarget(topology, env.service, r.delayMs, jobLane(topology, env));
    if (target.units > 0) {
      // The delay levels are shared by every service and have no x-max-length: the bound is here.
      const work = r.svc.work;
      try {
        await stores.delayed.reserve(env.service, env.tenant, env.jobId, Date.now() + target.delayMs, { maxPerService: work.delayedMaxLength ?? work.maxLength, maxPerTenant: config.maxDelayedPerTenant });
      } catch (err) {
        if ((err as GatewayError).code === 'GW_ERR_DELAYED_BACKLOG_FULL') metrics.delayedRefused.labels(env.service, String((err as GatewayError).extra?.scope)).inc();
        throw err;
      }
      try {
        await admission.track(replies.publish(target.exchange, target.routingKey, env.body, encodeRequest(env), 'async'));
      } catch (err) {
        await stores.delayed.release(env.service, env.tenant, env.jobId).catch((e: unknown) => logger.warn({ err: e, ...log }, 'delayed reservation not released; it expires at its due time'));
        throw err;
      }
    } else {
      await admission.track(replies.publish(target.exchange, target.routingKey, env.body, encodeRequest(env), 'async'));
    }
    metrics.jobsAccepted.labels(env.service).inc();
    this.#o.onAccepted?.(env, target.units > 0 ? env.enqueuedAt + target.delayMs : undefined);
    const queued: JobEvent = { v: 1, kind: 'job', jobId: env.jobId, tenant: env.tenant, service: env.service, state: 'queued', attempt: 1, at: Date.now(), enqueuedAt: env.enqueuedAt, requestId: env.requestId };
    // From here on the job is accepted: store trouble is logged, never turned into an error answer.
    let record: JobRecord | undefined;
    try {
      record = await stores.jobs.apply(queued);
    } catch (err) {
      logger.error({ err, ...log }, 'accepted job not recorded in the job store; its events will record it');
    }
    this.#o.jobEvents.announce(queued);
    const key = r.idempotencyKey;
    if (key !== undefined) {
      await stores.idempotency
        .complete(env.tenant, key, { fingerprint, answer: { kind: 'async', jobId: env.jobId } }, config.idempotencyTtlMs)
        .catch((err: unknown) => logger.error({ err, ...log }, 'idempotency answer not stored; duplicates get 409 until the claim expires'));
    }
    record ??= queuedRecord({ id: env.jobId, tenant: env.tenant, service: env.service, createdAt: env.enqueuedAt, updatedAt: queued.at, requestId: env.requestId });
    return this.#answerJob(r, record);
  }
}
