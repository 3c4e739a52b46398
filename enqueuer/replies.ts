import type { ChannelModel, ConfirmChannel, ConsumeMessage } from 'amqplib';
import type { Logger } from 'pino';
import { ConfirmPublisher, markMaybeDelivered, type PublishKind, type PublishOutcome } from '../shared/amqp/confirm-publisher.ts';
export type { PublishKind };
import { decodeReply, type PublishOptions, type ReplyEnvelope } from '../shared/envelope.ts';
import { GatewayError } from '../shared/errors.ts';

/** What a publish carried, for the `kind` label of `gw_publish_total`. */

/** RabbitMQ's direct reply-to pseudo-queue. */
export const DIRECT_REPLY_TO = 'amq.rabbitmq.reply-to';

interface PendingReply {
  settle: (err: Error | undefined, reply?: ReplyEnvelope) => void;
}

/** A confirm channel with its own direct reply-to consumer and its own correlation map. */
class ReplyChannel {
  readonly channel: ConfirmChannel;
  readonly publisher: ConfirmPublisher;
  readonly pending = new Map<string, PendingReply>();
  open = true;

  constructor(channel: ConfirmChannel, publisher: ConfirmPublisher) {
    this.channel = channel;
    this.publisher = publisher;
  }
}

export interface ReplyRouterOptions {
  channels: number;
  publishTimeoutMs: number;
  publishWindow: number;
  isBlocked: () => boolean;
  logger: Logger;
  onPublish: (outcome: PublishOutcome, kind: PublishKind) => void;
  onLateReply: () => void;
  /** A publish went unconfirmed for `publishTimeoutMs`. */
  onConfirmTimeout?: () => void;
}

/**
 * Synchronous request-reply over direct reply-to. Each request is published on the same channel as
 * the reply consumer that will receive its answer (a RabbitMQ requirement), so a dead channel fails
 * exactly its own requests, at once, with 503.
 */
export class ReplyRouter {
  #options: ReplyRouterOptions;
  #channels: ReplyChannel[] = [];
  #next = 0;
  #connection: ChannelModel | undefined;

  constructor(options: ReplyRouterOptions) {
    this.#options = options;
  }

  /** Requests waiting for a reply, over all channels. */
  get inflight(): number {
    let n = 0;
    for (const c of this.#channels) n += c.pending.size;
    return n;
  }

  /** Unconfirmed publishes, over all channels. */
  get publishPending(): number {
    let n = 0;
    for (const c of this.#channels) n += c.publisher.pending;
    return n;
  }

  get openChannels(): number {
    return this.#channels.length;
  }

  /** Opens the channels on a (new) connection; the reply consumer is registered before any publish. */
  async attach(connection: ChannelModel): Promise<void> {
    this.#connection = connection;
    const opened = await Promise.all(Array.from({ length: this.#options.channels }, () => this.#open(connection)));
    this.#channels = opened;
  }

  async #open(connection: ChannelModel): Promise<ReplyChannel> {
    const channel = await connection.createConfirmChannel();
    const publisher = new ConfirmPublisher(channel, {
      timeoutMs: this.#options.publishTimeoutMs,
      maxPending: this.#options.publishWindow,
      isBlocked: this.#options.isBlocked,
      onOutcome: (outcome, kind) => this.#options.onPublish(outcome, kind),
      ...(this.#options.onConfirmTimeout ? { onConfirmTimeout: this.#options.onConfirmTimeout } : {}),
    });
    const rc = new ReplyChannel(channel, publisher);
    channel.on('error', (err: Error) => this.#options.logger.warn({ err }, 'reply channel error'));
    channel.on('close', () => this.#onClose(rc));
    await channel.consume(DIRECT_REPLY_TO, (msg) => this.#onReply(rc, msg), { noAck: true });
    return rc;
  }

  #onReply(rc: ReplyChannel, msg: ConsumeMessage | null): void {
    if (msg === null) return; // consumer cancelled by the broker; the channel close path handles it
    const id = msg.properties.correlationId as string | undefined;
    const entry = id === undefined ? undefined : rc.pending.get(id);
    if (!entry) {
      this.#options.onLateReply();
      return;
    }
    let reply: ReplyEnvelope;
    try {
      reply = decodeReply(msg);
    } catch (err) {
      entry.settle(new GatewayError('GW_ERR_DOWNSTREAM_BAD_RESPONSE', `undecodable reply: ${(err as Error).message}`));
      return;
    }
    entry.settle(undefined, reply);
  }

  #onClose(rc: ReplyChannel): void {
    if (!rc.open) return;
    rc.open = false;
    this.#channels = this.#channels.filter((c) => c !== rc);
    // Every waiting request was written to this channel: the broker may still deliver it.
    const err = markMaybeDelivered(new GatewayError('GW_ERR_BROKER_UNAVAILABLE', 'the broker channel carrying this request closed', { retryAfterS: 1 }));
    for (const entry of [...rc.pending.values()]) entry.settle(err);
    rc.publisher.failAll(err);
    const connection = this.#connection;
    if (!connection) return;
    // A channel-level error (e.g. 406) leaves the connection up: replace the channel now. If the
    // connection is gone this fails, and the next connect re-attaches all channels.
    this.#open(connection).then(
      (fresh) => {
        if (this.#connection === connection) this.#channels.push(fresh);
        else void fresh.channel.close().catch(() => {});
      },
      () => {},
    );
  }

  /** The broker blocked the connection: fail the publishes it now holds unread, at once (503). */
  failUnconfirmed(err: Error): void {
    for (const rc of this.#channels) rc.publisher.failPending(err);
  }

  /** The connection is gone: fail every waiting request now rather than at its timeout. */
  detach(): void {
    this.#connection = undefined;
    for (const rc of this.#channels) this.#onClose(rc);
    this.#channels = [];
  }

  /**
   * Publishes a request (mandatory, confirmed) and resolves with its reply; `options` is this
   * request's own (its `replyTo` and `mandatory` are set on it). Rejects with a
   * {@link GatewayError}: 503 when it could not be published, 504 when no reply came in `waitMs`.
   */
  request(exchange: string, routingKey: string, content: Buffer, options: PublishOptions, waitMs: number): Promise<ReplyEnvelope> {
    const rc = this.#pick();
    if (!rc) return Promise.reject(new GatewayError('GW_ERR_BROKER_UNAVAILABLE', 'not connected to the broker', { retryAfterS: 1 }));
    const id = options.correlationId ?? options.messageId;
    return new Promise<ReplyEnvelope>((resolve, reject) => {
      const timer = setTimeout(() => {
        settle(new GatewayError('GW_ERR_REPLY_TIMEOUT', `no reply within ${waitMs} ms`));
      }, waitMs);
      const settle = (err: Error | undefined, reply?: ReplyEnvelope): void => {
        if (rc.pending.get(id) !== entry) return;
        rc.pending.delete(id);
        clearTimeout(timer);
        if (err) reject(err);
        else resolve(reply!);
      };
      const entry: PendingReply = { settle };
      rc.pending.set(id, entry);
      // `options` is built for this one request (encodeRequest): set the reply address on it, no copy.
      options.replyTo = DIRECT_REPLY_TO;
      rc.publisher
        .publish(exchange, routingKey, content, options, 'sync')
        .catch((err: Error) => settle(err));
    });
  }

  /**
   * Publishes without waiting for a reply (async jobs, events): resolves once the broker confirmed,
   * rejects with a {@link GatewayError} (503) on nack, return, channel loss or timeout. `kind`
   * labels `gw_publish_total` (`async` for a job, `replay` for a DLQ replay, `event`).
   */
  publish(exchange: string, routingKey: string, content: Buffer, options: PublishOptions, kind: PublishKind): Promise<void> {
    const rc = this.#pick();
    if (!rc) return Promise.reject(new GatewayError('GW_ERR_BROKER_UNAVAILABLE', 'not connected to the broker', { retryAfterS: 1 }));
    return rc.publisher.publish(exchange, routingKey, content, options, kind);
  }

  #pick(): ReplyChannel | undefined {
    const n = this.#channels.length;
    for (let i = 0; i < n; i++) {
      const rc = this.#channels[this.#next++ % n]!;
      if (rc.open && !rc.publisher.closed) return rc;
    }
    return undefined;
  }

  async close(): Promise<void> {
    const channels = this.#channels;
    this.#connection = undefined;
    this.#channels = [];
    await Promise.all(channels.map((rc) => rc.channel.close().catch(() => {})));
  }
}
