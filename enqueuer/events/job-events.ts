import type { Logger } from 'pino';
import { EventBatcher } from '../../shared/amqp/event-batcher.ts';
import { BATCH_ROUTING_KEY, eventIdSource, FIRST_AT_HEADER, type JobEvent } from '../../shared/events.ts';
import type { JobStore } from '../jobs/job-store.ts';
import type { ReplyRouter } from '../replies.ts';
import type { JobEventHub } from './job-event-hub.ts';
import type { EventId } from './replay-log.ts';

const nextEventId = eventIdSource();

/**
 * Where this replica's job events go: {@link received} for a transition read from the events
 * stream, {@link announce} to put one made here into the stream (batched: every replica, this one
 * included, reads it back), {@link record} for a transition made here that this replica applies at once.
 */
export class JobEvents {
  #hub: JobEventHub;
  #jobs: JobStore;
  #logger: Logger;
  /** `queued` transitions on their way to the events stream. */
  readonly outbox: EventBatcher;
  #observe: ((e: JobEvent) => void) | undefined;

  /** `observe`: also told every transition read from the stream (the dashboard's timelines and activity). */
  constructor(o: {
    hub: JobEventHub; jobs: JobStore; replies: ReplyRouter; eventsExchange: string; logger: Logger;
    onFlush?: (events: number, bytes: number, waitedMs: number) => void;
    observe?: (e: JobEvent) => void;
  }) {
    this.#hub = o.hub;
    this.#jobs = o.jobs;
    this.#logger = o.logger;
    this.outbox = new EventBatcher({
      publish: (body, _events, firstAt) => o.replies.publish(o.eventsExchange, BATCH_ROUTING_KEY, body, { messageId: nextEventId(), contentType: 'application/json', headers: { [FIRST_AT_HEADER]: firstAt } }, 'event'),
      ...(o.onFlush ? { onFlush: o.onFlush } : {}),
      onError: (err, events) => o.logger.warn({ err, events }, 'queued events not published to the events stream'),
    });
    this.#observe = o.observe;
  }

  /** A transition read from the stream: waiters and SSE streams hear it at once; resolves once the store applied it (monotonic). */
  received(e: JobEvent, id: EventId): Promise<unknown> {
    this.#hub.emit(e, id);
    // The store, timelines and counts keep the enqueuer's own `queued`; the `running` after it records the job anyway.
    if (e.implied) return Promise.resolve();
    this.#observe?.(e);
    return this.#jobs.apply(e);
  }

  /** Sends the transition to the events stream for every replica (fire and forget; batched). */
  announce(e: JobEvent): void {
    this.outbox.add(e);
  }

  /** Records a transition made here (e.g. a job replayed from the DLQ is `queued` again) in the store now, and announces it. */
  record(e: JobEvent): void {
    this.#jobs.apply(e).catch((err: unknown) => this.#logger.warn({ err, jobId: e.jobId, tenant: e.tenant, state: e.state }, 'job event not applied to the store'));
    this.announce(e);
  }

  /** Publishes what waits in the outbox and waits for its confirms. */
  close(): Promise<void> {
    return this.outbox.close();
  }
}
