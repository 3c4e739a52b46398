import type { Channel, ChannelModel, ConsumeMessage } from 'amqplib';
import type { Logger } from 'pino';
import type { BrokerConnection } from './broker-connection.ts';

/** Where a stream consumer starts: an offset, or one of RabbitMQ's named positions. */
export type StreamStart = number | 'first' | 'last' | 'next';

export interface StreamReaderOptions {
  /**
   * Opens the reader's own connection (not started) with this setup, run after every (re)connect:
   * e.g. `(setup) => new BrokerConnection({ url, role, logger, setup })`.
   */
  open: (setup: (connection: ChannelModel) => Promise<void>) => BrokerConnection;
  logger: Logger;
  /** The stream (`x-queue-type: stream`) to read. */
  stream: string;
  /** Unacknowledged messages the broker may send ahead (a stream consumer needs a prefetch). @default 500 */
  prefetch?: number;
  /** Where the first connection starts (later ones resume after the last message handled). */
  start: () => StreamStart | Promise<StreamStart>;
  /** Each message once, in offset order; a throw is logged and the message counts as handled. */
  onMessage: (msg: ConsumeMessage, offset: number) => void;
  /** Retention dropped messages this reader had not read: it asked for `asked` and got `got`. */
  onGap?: (asked: number, got: number) => void;
}

/**
 * Reads a RabbitMQ stream over AMQP 0-9-1 by offset (docs/adr/1100-events-on-a-stream.md), on a
 * connection of its own (R2: consuming never shares a connection with publishing). RabbitMQ 3.9+
 * needs a prefetch, manual acks (credit only: a stream keeps its messages) and the
 * `x-stream-offset` consume argument; each delivery carries its offset in the `x-stream-offset`
 * header. After a lost connection it resumes at the offset after the last message it handled, so
 * nothing is missed and nothing is handled twice, whatever happened meanwhile.
 *
 * Generic: any process that must see every message of a stream (job and breaker events in the
 * enqueuer, cancellations in dequeuer replicas) can use it.
 */
export class StreamReader {
  readonly connection: BrokerConnection;
  #o: StreamReaderOptions;
  #last: number | undefined;
  #first: number | undefined;
  #asked: number | undefined;

  constructor(o: StreamReaderOptions) {
    this.#o = o;
    this.connection = o.open((connection) => this.#setup(connection));
  }

  /** Offset of the last message handled (undefined before the first). */
  get lastOffset(): number | undefined {
    return this.#last;
  }

  /** Offset of the first message this reader handled since it started or last met a gap. */
  get firstOffset(): number | undefined {
    return this.#first;
  }

  start(): void {
    this.connection.start();
  }

  waitUntilUp(timeoutMs: number): Promise<void> {
    return this.connection.waitUntilUp(timeoutMs);
  }

  close(): Promise<void> {
    return this.connection.close();
  }

  async #setup(connection: ChannelModel): Promise<void> {
    const channel = await connection.createChannel();
    channel.on('error', (err: Error) => this.#o.logger.warn({ err, stream: this.#o.stream }, 'stream channel error'));
    channel.on('close', () => {
      // A channel-level close with the connection up would leave this reader deaf: close the
      // connection so BrokerConnection reconnects and resumes from the last offset.
      if (this.connection.connection === connection) void connection.close().catch(() => {});
    });
    await channel.prefetch(this.#o.prefetch ?? 500);
    const from = this.#last !== undefined ? this.#last + 1 : await this.#o.start();
    this.#asked = typeof from === 'number' ? from : undefined;
    await channel.consume(this.#o.stream, (msg) => this.#onMessage(channel, msg), { noAck: false, arguments: { 'x-stream-offset': from } });
    this.#o.logger.info({ stream: this.#o.stream, from }, 'reading stream');
  }

  #onMessage(channel: Channel, msg: ConsumeMessage | null): void {
    if (msg === null) return;
    const offset = msg.properties.headers?.['x-stream-offset'];
    if (typeof offset !== 'number') {
      this.#o.logger.warn({ stream: this.#o.stream }, 'stream delivery without x-stream-offset ignored');
      channel.ack(msg);
      return;
    }
    // A consumer may start at the beginning of the chunk holding the offset asked for.
    if (this.#last !== undefined && offset <= this.#last) {
      channel.ack(msg);
      return;
    }
    if (this.#asked !== undefined) {
      if (offset > this.#asked) {
        this.#o.logger.warn({ stream: this.#o.stream, asked: this.#asked, got: offset }, 'stream messages lost to retention before this reader read them');
        this.#first = offset;
        this.#o.onGap?.(this.#asked, offset);
      }
      if (offset >= this.#asked) this.#asked = undefined;
      else {
        channel.ack(msg);
        return;
      }
    }
    this.#first ??= offset;
    this.#last = offset;
    try {
      this.#o.onMessage(msg, offset);
    } catch (err) {
      this.#o.logger.error({ err, stream: this.#o.stream, offset }, 'stream message handler failed');
    }
    channel.ack(msg);
  }
}
