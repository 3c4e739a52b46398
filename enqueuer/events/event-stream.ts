import { randomUUID } from 'node:crypto';
import type { ConsumeMessage } from 'amqplib';
import type { Logger } from 'pino';
import { StreamReader, type StreamStart } from '../../shared/amqp/stream-reader.ts';
import { FIRST_AT_HEADER, type BreakerEvent, type JobEvent, type StreamMarker } from '../../shared/events.ts';
import type { ConnectionSource } from '../broker.ts';
import type { JobStore } from '../jobs/job-store.ts';
import { CatchUps, type CatchUpOptions } from './catch-up.ts';
import { ReplayLog, type EventId, type LoggedEvent } from './replay-log.ts';
import { streamContent, type DeadLetterSource } from './stream-content.ts';

export interface EventStreamOptions {
  /** Opens this reader's connection (started and closed with the enqueuer's others). */
  broker: ConnectionSource;
  logger: Logger;
  /** The `<prefix>.events` stream. */
  stream: string;
  /** Where this replica resumes: the store's applied offset (Redis), or the stream's start. */
  store: Pick<JobStore, 'appliedOffset' | 'recordOffset'>;
  /** Bytes of recent stream messages kept for SSE resumes ({@link ReplayLog}). */
  replayMaxBytes: number;
  /** SSE resumes older than the replay log that may read the stream at once ({@link CatchUps}). @default 8 */
  catchUpMax?: number;
  /** A catch-up ended ({@link CatchUpOptions.onEnd}). */
  onCatchUp?: CatchUpOptions['onEnd'];
  /**
   * The dead-letter exchange and each service's work-queue delivery limit: the stream is bound
   * there, so a job the broker dead-letters by the delivery limit (its worker kept dying, nobody
   * published its `dead` event) still reaches `onJob` as `dead` ({@link deliveryLimitDeath}).
   */
  deadLetters?: DeadLetterSource;
  /** A job transition, with its stream position; resolves once the store applied it. */
  onJob: (e: JobEvent, id: EventId) => Promise<unknown>;
  onBreaker: (e: BreakerEvent) => void;
  /** An event that is not a v1 event (counted). */
  onInvalid: () => void;
  /** A stream message was handled: its offset, transitions and how long after its oldest transition happened it was read (ms). */
  onApplied?: (offset: number, events: number, lagMs: number | undefined) => void;
}

/**
 * The enqueuer's view of the events stream (docs/adr/1100-events-on-a-stream.md). Reads every
 * message in offset order with a {@link StreamReader}: a replica with Redis resumes after the
 * offset the store recorded, one with the memory store rebuilds from the retained window, and
 * either resumes after the last message it handled when its connection comes back. It has caught
 * up once it reads back its own start marker (published by the enqueuer when connected), which
 * sits at the stream's tail of that moment. Keeps the last messages' transitions for SSE resumes.
 */
export class EventStream {
  readonly reader: StreamReader;
  readonly log: ReplayLog;
  /** Readers for SSE resumes older than {@link log}, on this reader's connection. */
  readonly catchUp: CatchUps;
  /** This process's start marker id. */
  readonly markerId = randomUUID();
  #o: EventStreamOptions;
  #caughtUp = false;
  #caughtUpWaiters: Array<() => void> = [];
  /** Store applies of earlier messages, so an offset is recorded only after every one before it. */
  #commit: Promise<unknown> = Promise.resolve();
  #recording = false;
  #toRecord: number | undefined;
  #recorded: number | undefined;
  #lastCount = 0;

  constructor(o: EventStreamOptions) {
    this.#o = o;
    this.log = new ReplayLog(o.replayMaxBytes);
    this.reader = new StreamReader({
      open: (setup) => o.broker.open('enqueuer-events', { setup }),
      logger: o.logger,
      stream: o.stream,
      start: () => this.#startOffset(),
      onMessage: (msg, offset) => this.#onMessage(msg, offset),
      onGap: () => this.log.clear(),
    });
    this.catchUp = new CatchUps({
      connection: () => this.reader.connection.connection,
      stream: o.stream,
      deadLetters: o.deadLetters,
      max: o.catchUpMax ?? 8,
      logger: o.logger,
      ...(o.onCatchUp ? { onEnd: o.onCatchUp } : {}),
    });
  }

  get connection(): StreamReader['connection'] {
    return this.reader.connection;
  }

  /** True once this replica read back its start marker: its view includes everything before it started. */
  get caughtUp(): boolean {
    return this.#caughtUp;
  }

  /** Position of the last transition handled (the id a fresh SSE stream's first event carries). */
  get position(): EventId | undefined {
    const last = this.reader.lastOffset;
    // One past the last index of that message: every transition read so far sorts before it.
    return last === undefined ? undefined : { offset: last, index: this.#lastCount };
  }

  /** The marker message the enqueuer publishes once connected. */
  marker(): Buffer {
    const m: StreamMarker = { v: 2, kind: 'marker', id: this.markerId };
    return Buffer.from(JSON.stringify(m));
  }

  whenCaughtUp(): Promise<void> {
    if (this.#caughtUp) return Promise.resolve();
    return new Promise((resolve) => this.#caughtUpWaiters.push(resolve));
  }

  /** What `/readyz` shows under `events`. */
  status(): true | string {
    const c = this.connection;
    if (c.state !== 'connected') return c.lastError ?? c.state;
    if (!this.#caughtUp) return `catching up (at offset ${this.reader.lastOffset ?? 'none'})`;
    return true;
  }

  /** Waits until the store applied (and the offset of) every message read so far: call after the connection closed. */
  async settle(): Promise<void> {
    await this.#commit.catch(() => {});
  }

  async #startOffset(): Promise<StreamStart> {
    const applied = await this.#o.store.appliedOffset();
    this.#o.logger.info({ stream: this.#o.stream, appliedOffset: applied ?? null }, applied === undefined ? 'rebuilding the job view from the start of the events stream' : 'resuming the events stream after the recorded offset');
    return applied === undefined ? 'first' : applied + 1;
  }

  #onMessage(msg: ConsumeMessage, offset: number): void {
    const logged: LoggedEvent[] = [];
    const applies: Array<Promise<unknown>> = [];
    const job = (e: JobEvent, index: number): void => {
      const id = { offset, index };
      logged.push({ id, event: e });
      applies.push(this.#o.onJob(e, id).catch((err: unknown) => this.#o.logger.warn({ err, jobId: e.jobId, tenant: e.tenant, state: e.state, offset }, 'job event not applied to the store')));
    };
    let count = 0;
    const content = streamContent(msg, this.#o.deadLetters);
    if (content.kind === 'dead-letter') {
      const dead = content.dead;
      // Rejected (the dequeuer published `dead`) or a DLQ rotation copy: nothing new.
      if (dead) {
        this.#o.logger.warn({ jobId: dead.jobId, tenant: dead.tenant, service: dead.service, attempt: dead.attempt, requestId: dead.requestId }, 'job dead-lettered by the delivery limit (its worker kept stopping while holding it)');
        job(dead, 0);
        count = 1;
      }
    } else if (content.kind === 'undecodable') {
      this.#o.onInvalid();
      this.#o.logger.warn({ routingKey: msg.fields.routingKey, offset }, 'ignored a stream message that is neither a v1 event nor a v2 batch');
    } else {
      const decoded = content.decoded;
      for (let i = 0; i < decoded.invalid; i++) this.#o.onInvalid();
      decoded.events.forEach((e, index) => {
        try {
          if (e.kind === 'job') job(e, index);
          else this.#o.onBreaker(e);
        } catch (err) {
          this.#o.logger.error({ err, kind: e.kind, service: e.service, offset }, 'event handler failed');
        }
      });
      count = decoded.events.length;
      if (decoded.marker === this.markerId && !this.#caughtUp) {
        this.#caughtUp = true;
        this.#o.logger.info({ stream: this.#o.stream, offset }, 'caught up with the events stream');
        for (const w of this.#caughtUpWaiters.splice(0)) w();
      }
    }
    this.#lastCount = count;
    this.log.push(offset, logged, msg.content.length);
    const firstAt = msg.properties.headers?.[FIRST_AT_HEADER];
    this.#o.onApplied?.(offset, count, typeof firstAt === 'number' ? Date.now() - firstAt : undefined);
    const before = this.#commit;
    this.#commit = Promise.all([before, ...applies]).then(() => this.#record(offset));
  }

  /** Records the applied offset, coalescing: at most one write in flight, then the newest. */
  #record(offset: number): void {
    this.#toRecord = offset;
    if (this.#recording) return;
    this.#recording = true;
    void (async () => {
      while (this.#toRecord !== undefined && this.#toRecord !== this.#recorded) {
        const next = this.#toRecord;
        try {
          await this.#o.store.recordOffset(next);
          this.#recorded = next;
        } catch (err) {
          this.#o.logger.warn({ err, offset: next }, 'applied stream offset not recorded; a restart replays from the previous one');
          break;
        }
      }
      this.#recording = false;
    })();
  }
}
