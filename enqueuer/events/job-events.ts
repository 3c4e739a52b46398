import type { Logger } from 'pino';
import { encodeEvent, eventIdSource, jobEventRoutingKey, type JobEvent } from '../../shared/events.ts';
import type { JobStore } from '../jobs/job-store.ts';
import type { ReplyRouter } from '../replies.ts';
import type { JobEventHub } from './job-event-hub.ts';

const nextEventId = eventIdSource();

/**
 * Where this replica's job events go: {@link received} for an event from the events exchange (or
 * one this replica made), {@link announce} to tell the other replicas, {@link record} for both.
 */
export class JobEvents {
  #hub: JobEventHub;
  #jobs: JobStore;
  #replies: ReplyRouter;
  #exchange: string;
  #logger: Logger;

  constructor(o: { hub: JobEventHub; jobs: JobStore; replies: ReplyRouter; eventsExchange: string; logger: Logger }) {
    this.#hub = o.hub;
    this.#jobs = o.jobs;
    this.#replies = o.replies;
    this.#exchange = o.eventsExchange;
    this.#logger = o.logger;
  }

  /** Waiters and streams hear the event at once; the store applies it in the background (monotonic). */
  received(e: JobEvent): void {
    this.#hub.emit(e);
    this.#jobs.apply(e).catch((err: unknown) => this.#logger.warn({ err, jobId: e.jobId, tenant: e.tenant, state: e.state }, 'job event not applied to the store'));
  }

  /** Publishes the event for the other replicas (each applies it; this one already has); fire and forget. */
  announce(e: JobEvent): void {
    this.#replies
      .publish(this.#exchange, jobEventRoutingKey(e), encodeEvent(e), { messageId: nextEventId(), contentType: 'application/json' }, 'event')
      .catch((err: unknown) => this.#logger.warn({ err, jobId: e.jobId, tenant: e.tenant }, 'queued event not published'));
  }

  /** Records an event made here (e.g. a job replayed from the DLQ is `queued` again) and tells the other replicas. */
  record(e: JobEvent): void {
    this.received(e);
    this.announce(e);
  }
}
