import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { encodeCancellation, type Cancellation } from '../../shared/control/cancellation.ts';
import type { JobEvent } from '../../shared/events.ts';
import type { RequestEnvelope } from '../../shared/envelope.ts';
import type { Topology } from '../../shared/topology/topology.ts';
import type { ReplyRouter } from '../replies.ts';
import type { ConnectionSource } from '../broker.ts';
import { ActivityBoard } from './activity.ts';
import { AuditTrail } from './audit-trail.ts';
import { QueueDepths } from './queue-depths.ts';
import { MemoryTimeline, RedisTimeline, type Timeline } from './timeline.ts';

export interface WorkbenchOptions {
  /** The audit reader's connection comes from here (started, awaited and closed with the others). */
  broker: ConnectionSource;
  topology: Topology;
  replies: ReplyRouter;
  logger: Logger;
  /** Shared timelines when the job store is in Redis; else each replica keeps its own. */
  redis?: { client: Redis; keyPrefix: string; ttlMs: number } | undefined;
}

/**
 * What the dashboard and the DLQ workbench read and write beyond the job store: the audit trail
 * (a stream), job cancellations (a stream every dequeuer reads), job timelines, per-minute
 * activity and queue depths (docs/adr/1600-dashboard-dlq-workbench-cancel.md).
 */
export class Workbench {
  readonly audit: AuditTrail;
  readonly timeline: Timeline;
  readonly activity = new ActivityBoard();
  readonly depths: QueueDepths;
  #o: WorkbenchOptions;

  constructor(o: WorkbenchOptions) {
    this.#o = o;
    const names = o.topology.names;
    this.audit = new AuditTrail({
      open: (setup) => o.broker.open('enqueuer-audit', { setup, logger: o.logger }),
      stream: names.auditStream,
      logger: o.logger,
      publish: (content, messageId) => o.replies.publish(names.controlExchange, names.auditRoutingKey, content, { messageId, contentType: 'application/json' }, 'event'),
    });
    // Passive declares ride on the audit reader's connection: no connection of their own.
    this.depths = new QueueDepths(() => this.audit.reader.connection.connection);
    this.timeline = o.redis ? new RedisTimeline(o.redis.client, o.redis.keyPrefix, o.redis.ttlMs) : new MemoryTimeline();
  }

  /** Every job event this replica hears. */
  observe(e: JobEvent): void {
    this.activity.apply(e);
    this.timeline.add(e).catch((err: unknown) => this.#o.logger.warn({ err, jobId: e.jobId, tenant: e.tenant, state: e.state }, 'job transition not added to its timeline'));
  }

  /** Keeps an accepted job's request as forwarded (method, path, query, headers, body size; never the body). */
  accepted(env: RequestEnvelope, notBefore: number | undefined): void {
    const meta = { method: env.method, path: env.path, query: env.query, headers: env.headers, bodyBytes: env.body.length, ...(notBefore === undefined ? {} : { notBefore }) };
    this.timeline.setRequest(env.tenant, env.jobId, meta).catch((err: unknown) => this.#o.logger.warn({ err, jobId: env.jobId, tenant: env.tenant }, 'job request metadata not kept'));
  }

  /** Records a cancellation on the stream every dequeuer reads; resolves once the broker confirmed it. */
  publishCancellation(c: Cancellation): Promise<void> {
    const names = this.#o.topology.names;
    return this.#o.replies.publish(names.controlExchange, names.cancellationRoutingKey, encodeCancellation(c), { messageId: `cancel-${c.jobId}`, contentType: 'application/json' }, 'event');
  }
}
