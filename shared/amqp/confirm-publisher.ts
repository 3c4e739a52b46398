import type { ConfirmChannel, Message, Options } from 'amqplib';
import { GatewayError } from '../errors.ts';

/** How a publish ended; `confirmed` is the only success. */
export type PublishOutcome = 'confirmed' | 'nacked' | 'returned' | 'timeout' | 'closed' | 'blocked';
export const PUBLISH_OUTCOMES: readonly PublishOutcome[] = ['confirmed', 'nacked', 'returned', 'timeout', 'closed', 'blocked'];

/**
 * What a publish carries, the `kind` label of `gw_publish_total`: `sync` request, `async` job,
 * `retry` copy into the delay levels, `giveback` (a job handed back unchanged while its breaker is
 * open), `event` (job/breaker transition), `replay` (a DLQ entry sent back to work).
 */
export type PublishKind = 'sync' | 'async' | 'retry' | 'giveback' | 'event' | 'replay';
export const PUBLISH_KINDS: readonly PublishKind[] = ['sync', 'async', 'retry', 'giveback', 'event', 'replay'];

export interface ConfirmPublisherOptions {
  /** A publish not confirmed within this time fails (the broker may still have it). @default 5000 */
  timeoutMs?: number;
  /** Unconfirmed publishes allowed at once on this channel; beyond it publishes fail fast. @default 1024 */
  maxPending?: number;
  /** True while the broker blocks the connection (memory/disk alarm): publishes fail at once. */
  isBlocked?: () => boolean;
  /** Called once per publish with its outcome and kind (metrics). */
  onOutcome?: (outcome: PublishOutcome, kind: PublishKind) => void;
  /** A publish went unconfirmed for `timeoutMs` (a liveness signal for the connection). */
  onConfirmTimeout?: () => void;
}

const indeterminate = new WeakSet<Error>();

/**
 * True when the error ended a publish that had already been written to the channel without a
 * confirm (channel or connection lost, confirm timeout): the broker may have the message, so a
 * request it carried may still run. False for definite refusals (nack, return, blocked, not sent).
 */
export function maybeDelivered(err: unknown): boolean {
  return err instanceof Error && indeterminate.has(err);
}

/** Marks `err` as ending a publish whose fate is unknown (see {@link maybeDelivered}). */
export function markMaybeDelivered<E extends Error>(err: E): E {
  indeterminate.add(err);
  return err;
}

interface Pending {
  kind: PublishKind;
  resolve: () => void;
  reject: (err: Error) => void;
  /** Epoch ms after which the publish fails unconfirmed. */
  deadline: number;
}

/**
 * Publishes on one confirm channel and settles each publish exactly once: broker ack → resolved;
 * nack (a `reject-publish` queue is full), `basic.return` (mandatory, unroutable), channel close or
 * timeout → a typed {@link GatewayError}. Every publish must carry a `messageId` unique among this
 * channel's unconfirmed publishes: a return arrives before its ack and is matched by it.
 */
export class ConfirmPublisher {
  readonly channel: ConfirmChannel;
  #options: Required<Omit<ConfirmPublisherOptions, 'onOutcome' | 'isBlocked' | 'onConfirmTimeout'>> & ConfirmPublisherOptions;
  #pending = new Map<string, Pending>();
  #returned = new Set<string>();
  #closed = false;
  /**
   * One timer per channel, armed for the oldest unconfirmed publish, instead of a setTimeout and a
   * clearTimeout per publish (docs/adr/1402): publishes share one timeout, so they expire in the
   * order they were made, and the oldest one is the first in `#pending` (insertion order).
   */
  #timer: NodeJS.Timeout | undefined;

  constructor(channel: ConfirmChannel, options: ConfirmPublisherOptions = {}) {
    this.channel = channel;
    this.#options = { timeoutMs: 5000, maxPending: 1024, ...options };
    channel.on('return', (msg: Message) => {
      const id = msg.properties.messageId as string | undefined;
      if (id !== undefined && this.#pending.has(id)) this.#returned.add(id);
    });
    channel.on('close', () => this.failAll(closedError(), 'closed'));
  }

  /** Unconfirmed publishes. */
  get pending(): number {
    return this.#pending.size;
  }
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Publishes with `mandatory` (set on `options`, which must be this publish's own object) and
   * resolves once the broker confirmed it; `kind` labels its metrics.
   */
  publish(exchange: string, routingKey: string, content: Buffer, options: Options.Publish & { messageId: string }, kind: PublishKind): Promise<void> {
    const id = options.messageId;
    if (this.#closed) return this.#fail('closed', kind, new GatewayError('GW_ERR_BROKER_UNAVAILABLE', 'broker channel is closed', { retryAfterS: 1 }));
    if (this.#options.isBlocked?.()) {
      return this.#fail('blocked', kind, new GatewayError('GW_ERR_BROKER_BLOCKED', undefined, { retryAfterS: 5 }));
    }
    if (this.#pending.size >= this.#options.maxPending) {
      return this.#fail('timeout', kind, new GatewayError('GW_ERR_BROKER_UNAVAILABLE', 'too many unconfirmed publishes', { retryAfterS: 1 }));
    }
    if (this.#pending.has(id)) return Promise.reject(new Error(`duplicate in-flight messageId ${id}`));
    return new Promise<void>((resolve, reject) => {
      this.#pending.set(id, { kind, resolve, reject, deadline: Date.now() + this.#options.timeoutMs });
      this.#timer ??= setTimeout(this.#expire, this.#options.timeoutMs);
      // The caller's options object is built per publish: set `mandatory` on it rather than copying it.
      options.mandatory = true;
      try {
        this.channel.publish(exchange, routingKey, content, options, (err: unknown) => {
          // amqplib calls back with 'message nacked' for a basic.nack and 'channel closed' for every
          // publish still unconfirmed when the channel closes: only the first is a full queue.
          if (err && isNack(err)) this.#settle(id, 'nacked', new GatewayError('GW_ERR_QUEUE_FULL', 'the broker rejected the message (queue full)', { retryAfterS: 1 }));
          else if (err) this.#settle(id, 'closed', closedError());
          else if (this.#returned.has(id)) this.#settle(id, 'returned', new GatewayError('GW_ERR_UNROUTABLE', `no queue bound for ${exchange}/${routingKey}`, { retryAfterS: 5 }));
          else this.#settle(id, 'confirmed');
        });
      } catch (err) {
        // amqplib throws synchronously on a closed channel or a value it cannot encode (not sent); its message
        // stays in `cause` (logged), never in the client-facing detail.
        this.#settle(id, 'closed', new GatewayError('GW_ERR_BROKER_UNAVAILABLE', 'the message could not be handed to the broker', { retryAfterS: 1, cause: err }));
      }
    });
  }

  /** Fails the publishes whose deadline passed (oldest first) and re-arms for the next oldest. */
  #expire = (): void => {
    this.#timer = undefined;
    const now = Date.now();
    for (const [id, p] of this.#pending) {
      if (p.deadline > now) {
        this.#timer = setTimeout(this.#expire, p.deadline - now);
        return;
      }
      this.#settle(id, 'timeout', markMaybeDelivered(new GatewayError('GW_ERR_BROKER_UNAVAILABLE', `publish not confirmed within ${this.#options.timeoutMs} ms`, { retryAfterS: 1 })));
      this.#options.onConfirmTimeout?.();
    }
  };

  #fail(outcome: PublishOutcome, kind: PublishKind, err: GatewayError): Promise<never> {
    this.#options.onOutcome?.(outcome, kind);
    return Promise.reject(err);
  }

  #settle(id: string, outcome: PublishOutcome, err?: Error): void {
    const p = this.#pending.get(id);
    if (!p) return;
    this.#pending.delete(id);
    this.#returned.delete(id);
    if (this.#pending.size === 0 && this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    this.#options.onOutcome?.(outcome, p.kind);
    if (err) p.reject(err);
    else p.resolve();
  }

  /**
   * Fails every unconfirmed publish but keeps the channel usable: used when the broker blocks the
   * connection (resource alarm), so callers get 503 at once instead of at the publish timeout. The
   * broker may still take those messages once unblocked: like a timeout, the outcome is unknown.
   */
  failPending(err: Error, outcome: PublishOutcome = 'blocked'): void {
    for (const id of [...this.#pending.keys()]) this.#settle(id, outcome, err);
  }

  /** Fails every unconfirmed publish (channel or connection gone). */
  failAll(err: Error, outcome: PublishOutcome = 'closed'): void {
    this.#closed = true;
    for (const id of [...this.#pending.keys()]) this.#settle(id, outcome, err);
  }
}

/** A confirm failed by a closed channel or connection: the broker may or may not have the message. */
function closedError(): GatewayError {
  return markMaybeDelivered(new GatewayError('GW_ERR_BROKER_UNAVAILABLE', 'broker channel closed before the publish was confirmed', { retryAfterS: 1 }));
}

/** amqplib's error for a `basic.nack` (lib/channel.js); anything else failing a confirm is a close. */
function isNack(err: unknown): boolean {
  return err instanceof Error && err.message === 'message nacked';
}
