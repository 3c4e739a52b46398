import type { Channel, ChannelModel, ConsumeMessage } from 'amqplib';
import type { Logger } from 'pino';

/**
 * How a delivery ends. `ack`: done. `reject`: failed for good (a queue with a DLX dead-letters it).
 * `requeue`: handed back without being a failure (shutdown, breaker open).
 */
export type Disposition = 'ack' | 'reject' | 'requeue';

/**
 * Handles one delivery. `live()` turns false once the delivering channel is gone (the broker has
 * requeued the delivery then): a handler that holds deliveries before running them skips those.
 */
export type DeliveryHandler = (msg: ConsumeMessage, live: () => boolean) => Promise<Disposition>;

export interface QueueConsumerOptions {
  queue: string;
  prefetch: number;
  handler: DeliveryHandler;
  logger: Logger;
  /** A handler threw (a bug): counted, logged, and the delivery rejected. */
  onHandlerError: (err: unknown) => void;
  /** Attach without consuming until {@link QueueConsumer.resume}. @default false */
  startPaused?: boolean;
}

/**
 * One consumer on its own channel with its own prefetch. Deliveries are settled on the channel
 * that delivered them, and only while it is open: after a channel dies its unacked deliveries are
 * requeued by the broker, so acking them on a newer channel would be a 406 (unknown delivery tag).
 */
export class QueueConsumer {
  readonly queue: string;
  #options: QueueConsumerOptions;
  #connection: ChannelModel | undefined;
  #channel: Channel | undefined;
  #consumerTag: string | undefined;
  #paused = false;
  #closing = false;
  #currentPrefetch = 0;
  #inflight = 0;
  #idleWaiters: Array<() => void> = [];

  constructor(options: QueueConsumerOptions) {
    this.queue = options.queue;
    this.#options = options;
    this.#paused = options.startPaused ?? false;
  }

  get inflight(): number {
    return this.#inflight;
  }
  get consuming(): boolean {
    return this.#consumerTag !== undefined;
  }
  get paused(): boolean {
    return this.#paused;
  }

  /** Opens a channel on a (new) connection and consumes unless paused. */
  async attach(connection: ChannelModel): Promise<void> {
    this.#connection = connection;
    this.#closing = false;
    const channel = await connection.createChannel();
    channel.on('error', (err: Error) => this.#options.logger.warn({ err, queue: this.queue }, 'consumer channel error'));
    channel.on('close', () => this.#onClose(channel));
    await channel.prefetch(this.#options.prefetch);
    this.#currentPrefetch = this.#options.prefetch;
    this.#channel = channel;
    if (!this.#paused) await this.#consume(channel);
  }

  async #consume(channel: Channel): Promise<void> {
    const { consumerTag } = await channel.consume(this.queue, (msg) => this.#onDelivery(channel, msg), { noAck: false });
    this.#consumerTag = consumerTag;
  }

  #onClose(channel: Channel): void {
    if (this.#channel !== channel) return;
    this.#channel = undefined;
    this.#consumerTag = undefined;
    const connection = this.#connection;
    if (this.#closing || !connection) return;
    // A channel error with the connection still up: re-open after a pause. If the connection is
    // gone this fails, and the next connect attaches again.
    setTimeout(() => {
      if (this.#connection === connection && !this.#channel && !this.#closing) {
        this.attach(connection).catch((err: unknown) => this.#options.logger.warn({ err, queue: this.queue }, 'consumer re-open failed'));
      }
    }, 1000).unref();
  }

  /** The connection is gone; its deliveries return to the queue on the broker side. */
  detach(): void {
    this.#connection = undefined;
    this.#channel = undefined;
    this.#consumerTag = undefined;
  }

  #onDelivery(channel: Channel, msg: ConsumeMessage | null): void {
    if (msg === null) {
      // basic.cancel from the broker (queue deleted, or a quorum-queue leader change on some versions).
      this.#options.logger.warn({ queue: this.queue }, 'consumer cancelled by the broker; re-consuming');
      this.#consumerTag = undefined;
      void channel.close().catch(() => {});
      return;
    }
    this.#inflight++;
    void this.#options
      .handler(msg, () => this.#channel === channel)
      .catch((err: unknown) => {
        this.#options.onHandlerError(err);
        return 'reject' as const;
      })
      .then((disposition) => this.#settle(channel, msg, disposition))
      .finally(() => {
        if (--this.#inflight === 0) for (const w of this.#idleWaiters.splice(0)) w();
      });
  }

  #settle(channel: Channel, msg: ConsumeMessage, disposition: Disposition): void {
    if (this.#channel !== channel) return; // channel gone: the broker requeued it already
    try {
      if (disposition === 'ack') channel.ack(msg);
      else if (disposition === 'reject') channel.nack(msg, false, false);
      else channel.nack(msg, false, true);
    } catch (err) {
      this.#options.logger.warn({ err, queue: this.queue }, 'could not settle a delivery (channel closing)');
    }
  }

  /** Stops new deliveries (basic.cancel); in-flight ones finish. */
  async pause(): Promise<void> {
    this.#paused = true;
    const tag = this.#consumerTag;
    this.#consumerTag = undefined;
    if (tag && this.#channel) await this.#channel.cancel(tag).catch(() => {});
  }

  /**
   * Consumes again; with `prefetch`, new deliveries are limited to that many (a half-open breaker
   * wants one probe, not a full window). Without it, the configured prefetch applies again.
   */
  async resume(prefetch = this.#options.prefetch): Promise<void> {
    this.#paused = false;
    const channel = this.#channel;
    if (!channel) return;
    if (this.#consumerTag && prefetch === this.#currentPrefetch) return;
    if (this.#consumerTag) {
      const tag = this.#consumerTag;
      this.#consumerTag = undefined;
      await channel.cancel(tag).catch(() => {});
    }
    if (prefetch !== this.#currentPrefetch) {
      await channel.prefetch(prefetch);
      this.#currentPrefetch = prefetch;
    }
    await this.#consume(channel);
  }

  /** Resolves when no delivery is in flight, or after `timeoutMs`. */
  async idle(timeoutMs: number): Promise<boolean> {
    if (this.#inflight === 0) return true;
    return Promise.race([
      new Promise<boolean>((resolve) => this.#idleWaiters.push(() => resolve(true))),
      new Promise<boolean>((resolve) => setTimeout(() => resolve(false), timeoutMs).unref()),
    ]);
  }

  /** Closes the channel; unsettled deliveries go back to the queue. */
  async close(): Promise<void> {
    this.#closing = true;
    const channel = this.#channel;
    this.#channel = undefined;
    this.#consumerTag = undefined;
    this.#connection = undefined;
    if (channel) await channel.close().catch(() => {});
  }
}
