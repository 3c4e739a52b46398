import type { Channel, ChannelModel, ConsumeMessage } from 'amqplib';
import type { Logger } from 'pino';
import { GatewayError } from '../../shared/errors.ts';
import type { JobEvent } from '../../shared/events.ts';
import { compareEventIds, type EventId } from './replay-log.ts';
import { jobTransitions, streamContent, type DeadLetterSource } from './stream-content.ts';

/**
 * Stream messages before the resume id a catch-up also reads, only to learn the per-job ranks the
 * client already saw: a `retrying` confirmed after its job's next attempt started reaches the stream
 * a few messages late, and a stream that did not know the later transition was seen would send it.
 */
export const SEED_MESSAGES = 256;

/**
 * How a catch-up ended: `done` (reached the live position: the route hands over to the live feed),
 * `gap` (the id is older than the stream retains: reset), `ended` (the response closed first: the
 * client left, or a job stream delivered the job's final transition).
 */
export type CatchUpOutcome = 'done' | 'gap' | 'ended';

export interface CatchUpOptions {
  /** This replica's events connection (the live reader's), undefined while it is down. */
  connection: () => ChannelModel | undefined;
  /** The `<prefix>.events` stream. */
  stream: string;
  deadLetters: DeadLetterSource | undefined;
  /** Catch-up readers that may run at once on this replica. */
  max: number;
  logger: Logger;
  /** Unacknowledged messages the broker sends ahead to one catch-up reader. @default 100 */
  prefetch?: number;
  /** A catch-up that hears nothing from the broker for this long fails (the client reconnects). @default 15000 */
  idleMs?: number;
  /** One catch-up ended: its outcome (or `failed`), the stream messages it read and how long it ran. */
  onEnd?: (outcome: CatchUpOutcome | 'failed', messages: number, ms: number) => void;
}

export interface CatchUpRead {
  /** The client saw every transition up to and including this id. */
  after: EventId;
  /** Read up to and including this offset: the live reader's position when the client subscribed to the live feed. */
  through: number;
  /**
   * Each job transition read, in stream order; `seen` is true for those at or before `after` (read
   * only to learn what the client already has). Must not throw.
   */
  onEvent: (e: JobEvent, id: EventId, seen: boolean) => void;
  /** False while the client's socket is full: acks (the broker's credit) wait for `onReady`. */
  ready: () => boolean;
  onReady: (fn: () => void) => void;
  /** Aborted when the response closes. */
  signal: AbortSignal;
  /** Ids for the logs. */
  log: Record<string, unknown>;
}

/**
 * SSE resumes from before this replica's replay log (docs/adr/1100-events-on-a-stream.md, "SSE
 * resume beyond the replay log"): a short-lived consumer on a channel of the replica's own events
 * connection (no connection per client) reads the stream from just before the client's id up to the
 * live reader's position, then the route hands over to the live feed, which it buffered meanwhile
 * (ids compared: no gap, no duplicate). At most `max` run at once: {@link reserve} refuses more with
 * a typed 503 and `Retry-After`. When the stream's first retained message is past the id, the
 * outcome is `gap` and the route sends `event: reset`.
 */
export class CatchUps {
  #o: CatchUpOptions;
  #active = 0;

  constructor(o: CatchUpOptions) {
    this.#o = o;
  }

  /** Catch-up readers running now. */
  get active(): number {
    return this.#active;
  }

  /**
   * Takes a catch-up slot (synchronous: call it before the handler's first await); 503
   * `GW_ERR_EVENTS_CATCHUP_BUSY` with `Retry-After` when `max` run, 503 `GW_ERR_BROKER_UNAVAILABLE`
   * while the events connection is down. Returns its release (idempotent).
   */
  reserve(): () => void {
    if (!this.#o.connection()) throw new GatewayError('GW_ERR_BROKER_UNAVAILABLE', 'the events stream cannot be read now', { retryAfterS: 2 });
    if (this.#active >= this.#o.max) throw new GatewayError('GW_ERR_EVENTS_CATCHUP_BUSY', `${this.#o.max} event streams are catching up from the events stream on this replica`, { retryAfterS: 2 });
    this.#active++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#active--;
    };
  }

  /**
   * Reads `after`'s neighbourhood up to `through` and hands each job transition to `onEvent`.
   * Resolves `done` once the message at `through` was handled, `gap` (before any `onEvent`) when
   * retention already dropped the message of `after`, `ended` when the signal fired; rejects
   * (a GatewayError) when the channel fails or the broker goes silent.
   */
  async read(r: CatchUpRead): Promise<CatchUpOutcome> {
    const started = Date.now();
    let messages = 0;
    const conn = this.#o.connection();
    if (!conn) throw new GatewayError('GW_ERR_BROKER_UNAVAILABLE', 'the events stream cannot be read now', { retryAfterS: 2 });
    let channel: Channel;
    try {
      channel = await conn.createChannel();
    } catch (err) {
      this.#o.onEnd?.('failed', 0, Date.now() - started);
      throw new GatewayError('GW_ERR_BROKER_UNAVAILABLE', 'no channel for an events-stream catch-up', { cause: err, retryAfterS: 2 });
    }
    const from = Math.max(0, r.after.offset - SEED_MESSAGES);
    const idleMs = this.#o.idleMs ?? 15_000;
    try {
      const outcome = await new Promise<CatchUpOutcome>((resolve, reject) => {
        let settled = false;
        let first = true;
        let last = -1;
        let unacked: ConsumeMessage | undefined;
        let waiting = false;
        let idle: NodeJS.Timeout | undefined;
        const settle = (outcome: CatchUpOutcome | Error): void => {
          if (settled) return;
          settled = true;
          clearTimeout(idle);
          r.signal.removeEventListener('abort', onAbort);
          if (outcome instanceof Error) reject(outcome);
          else resolve(outcome);
        };
        const armIdle = (): void => {
          clearTimeout(idle);
          idle = setTimeout(() => settle(new GatewayError('GW_ERR_BROKER_UNAVAILABLE', `no events-stream message for ${idleMs} ms while catching up`)), idleMs);
        };
        const onAbort = (): void => settle('ended');
        if (r.signal.aborted) return settle('ended');
        r.signal.addEventListener('abort', onAbort, { once: true });
        channel.on('error', (err: Error) => settle(new GatewayError('GW_ERR_BROKER_UNAVAILABLE', 'events-stream catch-up channel failed', { cause: err })));
        channel.on('close', () => settle(new GatewayError('GW_ERR_BROKER_UNAVAILABLE', 'events-stream catch-up channel closed')));
        /** Credit back to the broker, unless the client's socket is full (then once it drained). */
        const ack = (msg: ConsumeMessage): void => {
          unacked = msg;
          if (waiting) return;
          if (r.ready()) {
            channel.ack(msg, true);
            unacked = undefined;
            return;
          }
          waiting = true;
          r.onReady(() => {
            waiting = false;
            if (settled || !unacked) return;
            channel.ack(unacked, true);
            unacked = undefined;
          });
        };
        const onMessage = (msg: ConsumeMessage | null): void => {
          if (settled || msg === null) return;
          armIdle();
          const offset = msg.properties.headers?.['x-stream-offset'];
          if (typeof offset !== 'number' || offset <= last) return ack(msg);
          if (first) {
            first = false;
            // The message of `after` is gone: what followed it in there cannot be known.
            if (offset > r.after.offset) return settle('gap');
          }
          last = offset;
          messages++;
          for (const t of jobTransitions(streamContent(msg, this.#o.deadLetters), offset)) r.onEvent(t.event, t.id, compareEventIds(t.id, r.after) <= 0);
          if (offset >= r.through) return settle('done');
          ack(msg);
        };
        armIdle();
        channel.prefetch(this.#o.prefetch ?? 100)
          .then(() => channel.consume(this.#o.stream, onMessage, { noAck: false, arguments: { 'x-stream-offset': from } }))
          .catch((err: unknown) => settle(new GatewayError('GW_ERR_BROKER_UNAVAILABLE', 'events-stream catch-up consumer not started', { cause: err })));
      });
      this.#o.onEnd?.(outcome, messages, Date.now() - started);
      if (outcome === 'gap') this.#o.logger.info({ ...r.log, after: r.after, from }, 'SSE resume id older than the events stream retains: reset');
      return outcome;
    } catch (err) {
      this.#o.onEnd?.('failed', messages, Date.now() - started);
      this.#o.logger.warn({ ...r.log, err, after: r.after, through: r.through, messages }, 'SSE catch-up from the events stream failed; the client resumes on its next reconnect');
      throw err;
    } finally {
      channel.removeAllListeners('close');
      channel.on('error', () => {});
      await channel.close().catch(() => {});
    }
  }
}
