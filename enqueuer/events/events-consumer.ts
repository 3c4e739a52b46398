import type { ChannelModel, ConsumeMessage } from 'amqplib';
import type { Logger } from 'pino';
import type { BrokerConnection } from '../../shared/amqp/broker-connection.ts';
import { decodeEvent, type BreakerEvent, type GatewayEvent, type JobEvent } from '../../shared/events.ts';
import type { ConnectionSource } from '../broker.ts';
import { deliveryLimitDeath } from '../dlq-entry.ts';

export interface EventsConsumerOptions {
  /** Opens this consumer's connection (started and closed with the enqueuer's others). */
  broker: ConnectionSource;
  logger: Logger;
  /** The `<prefix>.events` topic exchange. */
  exchange: string;
  /** Bound of this replica's event queue: past it the oldest events are dropped, not the broker's memory. */
  maxLength: number;
  onJob: (e: JobEvent) => void;
  /**
   * The dead-letter exchange and each service's work-queue delivery limit: the queue is also bound
   * there, so a job the broker dead-letters by the delivery limit (its worker kept dying, nobody
   * published its `dead` event) still reaches `onJob` as `dead` ({@link deliveryLimitDeath}).
   */
  deadLetters?: { exchange: string; deliveryLimits: Readonly<Record<string, number>> };
  onBreaker: (e: BreakerEvent) => void;
  /** An event that is not a v1 event (counted). */
  onInvalid: () => void;
}

/**
 * Consumes the events exchange on its own connection (R2: consuming never shares a connection
 * with publishing, which a broker alarm would block). Each replica has its own exclusive,
 * auto-delete, server-named queue bound to `job.#` and `breaker.#`, so every replica sees every
 * event, and to the dead-letter exchange for jobs that die by the delivery limit. Events missed
 * while disconnected are not replayed: the next event of a job repairs its view.
 */
export class EventsConsumer {
  readonly connection: BrokerConnection;
  #o: EventsConsumerOptions;
  #queue: string | undefined;

  constructor(o: EventsConsumerOptions) {
    this.#o = o;
    this.connection = o.broker.open('enqueuer-events', { setup: (connection) => this.#setup(connection) });
  }

  /** Name of the current server-named queue (for tests and logs). */
  get queue(): string | undefined {
    return this.#queue;
  }

  async #setup(connection: ChannelModel): Promise<void> {
    const channel = await connection.createChannel();
    channel.on('error', (err: Error) => this.#o.logger.warn({ err }, 'events channel error'));
    channel.on('close', () => {
      // A channel-level close with the connection still up would leave us deaf: close the
      // connection so BrokerConnection reconnects and runs this setup again.
      if (this.connection.connection === connection) void connection.close().catch(() => {});
    });
    const q = await channel.assertQueue('', {
      exclusive: true,
      autoDelete: true,
      durable: false,
      arguments: { 'x-max-length': this.#o.maxLength, 'x-overflow': 'drop-head' },
    });
    await channel.bindQueue(q.queue, this.#o.exchange, 'job.#');
    await channel.bindQueue(q.queue, this.#o.exchange, 'breaker.#');
    const dl = this.#o.deadLetters;
    if (dl) for (const service of Object.keys(dl.deliveryLimits)) await channel.bindQueue(q.queue, dl.exchange, service);
    await channel.consume(q.queue, (msg) => this.#onMessage(msg), { noAck: true });
    this.#queue = q.queue;
    this.#o.logger.info({ queue: q.queue, exchange: this.#o.exchange }, 'consuming job and breaker events');
  }

  #onMessage(msg: ConsumeMessage | null): void {
    if (msg === null) return;
    const dl = this.#o.deadLetters;
    if (dl && msg.fields.exchange === dl.exchange) {
      const limit = dl.deliveryLimits[msg.fields.routingKey];
      const dead = limit === undefined ? undefined : deliveryLimitDeath(msg, msg.fields.routingKey, limit);
      if (!dead) return; // rejected (the dequeuer published `dead`) or a DLQ rotation copy
      this.#o.logger.warn({ jobId: dead.jobId, tenant: dead.tenant, service: dead.service, attempt: dead.attempt, requestId: dead.requestId }, 'job dead-lettered by the delivery limit (its worker kept stopping while holding it)');
      this.#deliver(dead);
      return;
    }
    const e = decodeEvent(msg.content);
    if (!e) {
      this.#o.onInvalid();
      this.#o.logger.warn({ routingKey: msg.fields.routingKey, messageId: msg.properties.messageId }, 'ignored an event that is not a v1 event');
      return;
    }
    this.#deliver(e);
  }

  #deliver(e: GatewayEvent): void {
    try {
      if (e.kind === 'job') this.#o.onJob(e);
      else this.#o.onBreaker(e);
    } catch (err) {
      this.#o.logger.error({ err, kind: e.kind, service: e.service }, 'event handler failed');
    }
  }
}
