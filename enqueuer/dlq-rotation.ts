import { randomUUID } from 'node:crypto';
import type { Channel, ConfirmChannel, ConsumeMessage, Options } from 'amqplib';
import { GatewayError } from '../shared/errors.ts';
import { HEADER } from '../shared/envelope.ts';
import type { Lane } from '../shared/topology/names.ts';
import { jobLane, type Topology } from '../shared/topology/topology.ts';
import { copyOptions, ROTATION_HEADER } from './dlq-entry.ts';

/** What a visit decides for one message of the rotation. */
/** `replay.service`: into another service's work queue (a redirect), else the DLQ's own service. */
export type Visit = 'keep' | 'discard' | { replay: { resetAttempts: boolean; service?: string } };

/** Messages in flight per rotation (prefetch and publish window). */
const WINDOW = 100;

/**
 * One pass over a DLQ (docs/adr/0200-dlq-operations-by-rotation.md): consume exactly the N messages
 * counted at the start, publish each one's copy in delivery order, ack each original once its copy
 * is confirmed.
 */
export class Rotation {
  readonly #ch: Channel;
  readonly #pub: ConfirmChannel;
  readonly #topology: Topology;
  readonly #service: string;
  readonly #o: { opTimeoutMs: number; maxScan: number };
  readonly #visit: (msg: ConsumeMessage) => Visit;
  readonly #id = randomUUID();
  #n = 0;
  #delivered = 0;
  #settled = 0;
  #returned = false;
  #failure: Error | undefined;
  #tag: Promise<string> | undefined;
  #cancelled: Promise<void> | undefined;
  /** basic.cancel-ok received: from now on an ack cannot make the broker deliver anything more. */
  #cancelDone = false;
  /** Confirmed deliveries whose ack waits for the consumer to be cancelled (see #onDelivery). */
  #deferred: ConsumeMessage[] = [];
  #outstanding = new Set<Promise<void>>();
  #finish: (() => void) | undefined;

  constructor(ch: Channel, pub: ConfirmChannel, topology: Topology, service: string, o: { opTimeoutMs: number; maxScan: number }, visit: (msg: ConsumeMessage) => Visit) {
    this.#ch = ch;
    this.#pub = pub;
    this.#topology = topology;
    this.#service = service;
    this.#o = o;
    this.#visit = visit;
  }

  get #queueName(): string {
    return this.#topology.names.deadLetterQueue(this.#service);
  }

  async run(): Promise<void> {
    // Nothing but a DLQ operation consumes a DLQ: a consumer means another replica is rotating it
    // (or the quorum queue has not yet applied the end of our previous operation: wait a little).
    let { messageCount, consumerCount } = await this.#ch.checkQueue(this.#queueName);
    for (let i = 0; consumerCount > 0 && i < 20; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      ({ messageCount, consumerCount } = await this.#ch.checkQueue(this.#queueName));
    }
    if (consumerCount > 0) throw new GatewayError('GW_ERR_DLQ_BUSY', 'another gateway replica is operating on this DLQ', { retryAfterS: 2 });
    if (messageCount > this.#o.maxScan) {
      throw new GatewayError('GW_ERR_DLQ_TOO_LARGE', `the DLQ holds ${messageCount} messages; the API operates on at most ${this.#o.maxScan}`);
    }
    if (messageCount === 0) return;
    this.#n = messageCount;
    const onReturn = (): void => {
      this.#returned = true;
    };
    this.#pub.on('return', onReturn);
    try {
      await this.#consumeAll();
    } finally {
      this.#pub.off('return', onReturn);
    }
  }

  async #consumeAll(): Promise<void> {
    await this.#ch.prefetch(Math.min(WINDOW, this.#n));
    const done = new Promise<void>((resolve) => {
      this.#finish = resolve;
    });
    const timer = setTimeout(() => this.#fail(new GatewayError('GW_ERR_DLQ_BUSY', `DLQ operation not done within ${this.#o.opTimeoutMs} ms`, { retryAfterS: 5 })), this.#o.opTimeoutMs);
    try {
      this.#tag = this.#ch.consume(this.#queueName, (msg) => this.#onDelivery(msg), { noAck: false }).then((ok) => ok.consumerTag);
      await this.#tag;
      await done;
    } finally {
      clearTimeout(timer);
    }
    if (this.#failure) throw this.#failure;
  }

  #cancel(): Promise<void> {
    this.#cancelled ??= (this.#tag ?? Promise.reject(new Error('not consuming')))
      .then((tag) => this.#ch.cancel(tag))
      .then(() => {
        this.#cancelDone = true;
      });
    return this.#cancelled;
  }

  #onDelivery(msg: ConsumeMessage | null): void {
    if (msg === null) return this.#fail(new GatewayError('GW_ERR_DLQ_BUSY', 'the broker cancelled the DLQ consumer', { retryAfterS: 1 }));
    const headers = msg.properties.headers ?? {};
    // Past the N we counted (or back at our own copies because the queue shrank meanwhile): leave
    // it unacked; the channel close at the end puts it back at the head, where it already was.
    if (this.#failure || this.#delivered >= this.#n || headers[ROTATION_HEADER] === this.#id) {
      if (this.#delivered < this.#n) {
        this.#n = this.#delivered;
        void this.#cancel().catch(() => {}).then(() => this.#maybeFinish());
      }
      return;
    }
    const index = this.#delivered++;
    if (this.#delivered === this.#n) void this.#cancel().catch((err: unknown) => this.#fail(err as Error)).then(() => this.#maybeFinish());
    let action: Visit;
    try {
      action = this.#visit(msg);
    } catch (err) {
      return this.#fail(err as Error);
    }
    const confirmed = action === 'discard' ? Promise.resolve() : this.#publishCopy(msg, action);
    this.#outstanding.add(confirmed);
    void confirmed.catch(() => {}).finally(() => this.#outstanding.delete(confirmed));
    // Deliveries ≤ acked + prefetch: acking only the first N − prefetch before the consumer is
    // cancelled guarantees the broker never hands us an (N+1)-th message, i.e. one of our own copies.
    const ackNow = index < this.#n - Math.min(WINDOW, this.#n);
    confirmed.then(
      () => {
        if (this.#returned) return this.#fail(new GatewayError('GW_ERR_UNROUTABLE', 'a DLQ copy was returned unroutable', { retryAfterS: 5 }));
        if (action === 'discard' && this.#failure) return;
        // An ack sent before cancel-ok could still let the quorum queue deliver one more message,
        // which would arrive after amqplib dropped the consumer and come back out of order.
        if (ackNow || this.#cancelDone) this.#ack(msg);
        else this.#deferred.push(msg);
        this.#settled++;
        this.#maybeFinish();
      },
      (err: unknown) => this.#fail(err as Error),
    );
  }

  /** A replayed job goes back to its own lane (tenant, priority) of `service`, as the enqueuer published it. */
  #replayLane(msg: ConsumeMessage, service: string): Lane {
    const h = msg.properties.headers ?? {};
    const tenant = h[HEADER.tenant] === undefined ? '' : String(h[HEADER.tenant]);
    return jobLane(this.#topology, { service, tenant, priority: String(h[HEADER.priority]) === 'high' ? 'high' : undefined });
  }

  #publishCopy(msg: ConsumeMessage, action: Exclude<Visit, 'discard'>): Promise<void> {
    const [exchange, key, options]: [string, string, Options.Publish] = action === 'keep'
      ? // Through the DLX with the rotation key (bound to this DLQ only, so the enqueuers' events
        // queues do not hear it), not the default exchange: the enqueuer's broker user may write
        // to gw.dlx but not to every queue by name.
        [this.#topology.names.deadLetterExchange, this.#topology.names.dlqRotationRoutingKey(this.#service), copyOptions(msg, { rotate: this.#id })]
      : [this.#topology.names.workExchange, this.#topology.names.workRoutingKey(action.replay.service ?? this.#service, this.#replayLane(msg, action.replay.service ?? this.#service)), copyOptions(msg, action)];
    return new Promise<void>((resolve, reject) => {
      try {
        this.#pub.publish(exchange, key, msg.content, options, (err: unknown) => {
          if (err) reject(new GatewayError('GW_ERR_QUEUE_FULL', 'the broker refused a DLQ copy (queue full)', { retryAfterS: 5 }));
          else resolve();
        });
      } catch (err) {
        reject(new GatewayError('GW_ERR_BROKER_UNAVAILABLE', (err as Error).message, { retryAfterS: 1, cause: err }));
      }
    });
  }

  #maybeFinish(): void {
    if (this.#settled < this.#n || !this.#cancelled) return;
    void this.#cancelled.then(() => {
      for (const m of this.#deferred.splice(0)) this.#ack(m);
      this.#finish?.();
    });
  }

  #ack(msg: ConsumeMessage): void {
    try {
      this.#ch.ack(msg);
    } catch (err) {
      // Channel already closed: the broker returns the original, its copy exists → a duplicate.
      this.#failure ??= err as Error;
    }
  }

  #fail(err: Error): void {
    if (this.#failure) return;
    this.#failure = err;
    // Stop deliveries, let publishes in flight settle (bounded): what was confirmed is acked (its
    // copy exists), the rest returns to the DLQ when the channel closes.
    void this.#cancel()
      .catch(() => {})
      .then(() => Promise.race([Promise.allSettled([...this.#outstanding]), new Promise((resolve) => setTimeout(resolve, 5000).unref())]))
      .then(() => {
        for (const m of this.#deferred.splice(0)) this.#ack(m);
        this.#finish?.();
      });
  }
}
