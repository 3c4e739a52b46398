import { randomUUID } from 'node:crypto';
import type { Channel, ChannelModel, ConfirmChannel, ConsumeMessage, Options } from 'amqplib';
import type { Logger } from 'pino';
import { BrokerConnection } from '../shared/amqp/broker-connection.ts';
import { GatewayError, isGatewayError } from '../shared/errors.ts';
import type { Topology } from '../shared/topology/topology.ts';
import { copyOptions, ROTATION_HEADER, toEntry, type DeadLetterEntry } from './dlq-entry.ts';

export interface DeadLettersOptions {
  url: string;
  heartbeatS: number;
  tls?: { ca?: Buffer[]; cert?: Buffer; key?: Buffer };
  topology: Topology;
  logger: Logger;
  /** Upper bound of one browse/replay/discard, waiting for the DLQ included (ms). @default 30000 */
  opTimeoutMs?: number;
  /** Largest DLQ (messages) the API operates on; beyond it use the management UI. @default 10000 */
  maxScan?: number;
}

/** What a visit decides for one message of the rotation. */
type Visit = 'keep' | 'discard' | { replay: { resetAttempts: boolean } };

export interface BrowsePage {
  entries: DeadLetterEntry[];
  /** Entries of this tenant in the DLQ. */
  total: number;
  nextOffset: number | undefined;
}

export interface ReplayRequest {
  ids?: readonly string[] | undefined;
  all?: boolean | undefined;
  resetAttempts?: boolean | undefined;
  dryRun?: boolean | undefined;
}

export interface ReplayResult {
  replayed: string[];
  notFound: string[];
  dryRun: boolean;
}

/** Messages in flight per rotation (prefetch and publish window). */
const WINDOW = 100;

/**
 * Browse, replay and discard on the per-service DLQs, on connections of their own (one consumes,
 * one publishes: an alarm that blocks the publisher must not stall acks).
 *
 * Every operation is one **rotation** (RABBITMQ-NOTES A.6 b, docs/adr/0200-dlq-rotation.md): read
 * N = the DLQ's message count, consume exactly N, and for each either publish a copy to the tail of
 * the same DLQ (kept), to the work exchange (replayed) or nothing (discarded); the original is acked
 * only after the broker confirmed its copy. Copies are published in delivery order on one channel,
 * so the DLQ ends in the same order with nothing lost. The DLQ is single-active-consumer, so one
 * replica rotates at a time; inside this process operations are serialized.
 */
export class DeadLetters {
  #o: Required<Omit<DeadLettersOptions, 'tls'>> & DeadLettersOptions;
  #consume: BrokerConnection;
  #publish: BrokerConnection;
  #queue: Promise<unknown> = Promise.resolve();
  #channels: { ch: Channel; pub: ConfirmChannel; consumeConn: ChannelModel; publishConn: ChannelModel; closed: boolean } | undefined;

  constructor(options: DeadLettersOptions) {
    this.#o = { opTimeoutMs: 30_000, maxScan: 10_000, ...options };
    const common = { url: options.url, heartbeatS: options.heartbeatS, logger: options.logger, ...(options.tls ? { tls: options.tls } : {}) };
    this.#consume = new BrokerConnection({ ...common, role: 'enqueuer-dlq-consume' });
    this.#publish = new BrokerConnection({ ...common, role: 'enqueuer-dlq-publish' });
  }

  start(): void {
    this.#consume.start();
    this.#publish.start();
  }

  async waitUntilReady(timeoutMs: number): Promise<void> {
    await Promise.all([this.#consume.waitUntilUp(timeoutMs), this.#publish.waitUntilUp(timeoutMs)]);
  }

  async close(): Promise<void> {
    await this.#queue.catch(() => {});
    const channels = this.#channels;
    this.#channels = undefined;
    if (channels) await Promise.all([channels.ch.close().catch(() => {}), channels.pub.close().catch(() => {})]);
    await Promise.all([this.#consume.close(), this.#publish.close()]);
  }

  /** The tenant's entries in DLQ order, `limit` of them from `offset`. */
  async browse(service: string, tenant: string, page: { offset: number; limit: number }): Promise<BrowsePage> {
    const all: DeadLetterEntry[] = [];
    await this.#serialized(service, (msg) => {
      const entry = toEntry(msg);
      if (entry.tenant === tenant) all.push(entry);
      return 'keep';
    });
    const entries = all.slice(page.offset, page.offset + page.limit);
    const next = page.offset + entries.length;
    return { entries, total: all.length, nextOffset: next < all.length ? next : undefined };
  }

  /** Replays the tenant's entries named by `ids` (every copy of each) or all of them. */
  async replay(service: string, tenant: string, req: ReplayRequest): Promise<ReplayResult> {
    const wanted = new Set(req.ids ?? []);
    const found = new Set<string>();
    const replayed: string[] = [];
    const dryRun = req.dryRun === true;
    await this.#serialized(service, (msg) => {
      const entry = toEntry(msg);
      if (entry.tenant !== tenant || !entry.jobId) return 'keep';
      if (!req.all && !wanted.has(entry.jobId)) return 'keep';
      found.add(entry.jobId);
      replayed.push(entry.jobId);
      return dryRun ? 'keep' : { replay: { resetAttempts: req.resetAttempts === true } };
    });
    return { replayed, notFound: [...wanted].filter((id) => !found.has(id)), dryRun };
  }

  /** Discards the tenant's entry `id` (every copy of it); returns how many messages were removed. */
  async discard(service: string, tenant: string, id: string): Promise<number> {
    let removed = 0;
    await this.#serialized(service, (msg) => {
      const entry = toEntry(msg);
      if (entry.tenant !== tenant || entry.jobId !== id) return 'keep';
      removed++;
      return 'discard';
    });
    return removed;
  }

  #serialized(service: string, visit: (msg: ConsumeMessage) => Visit): Promise<void> {
    const run = this.#queue.catch(() => {}).then(() => this.#rotate(service, visit));
    this.#queue = run;
    return run;
  }

  async #rotate(service: string, visit: (msg: ConsumeMessage) => Visit): Promise<void> {
    const log = this.#o.logger.child({ service });
    const { ch, pub } = await this.#openChannels(log);
    try {
      await new Rotation(ch, pub, this.#o.topology, service, this.#o, visit).run();
    } catch (err) {
      // Anything still unacked goes back to the DLQ when the channels close.
      this.#channels = undefined;
      await Promise.all([ch.close().catch(() => {}), pub.close().catch(() => {})]);
      if (isGatewayError(err)) throw err;
      log.warn({ err }, 'dlq operation failed');
      throw new GatewayError('GW_ERR_BROKER_UNAVAILABLE', 'the DLQ operation failed at the broker', { retryAfterS: 1, cause: err });
    }
  }

  /**
   * The channels stay open between operations: closing a channel right after its acks races with
   * them on a quorum queue (3.10 applied the consumer's "down" before pending settles and returned
   * acked messages to the queue, duplicating them), so after a successful rotation nothing is closed.
   */
  async #openChannels(log: Logger): Promise<{ ch: Channel; pub: ConfirmChannel }> {
    const consumeConn = this.#consume.connection;
    const publishConn = this.#publish.connection;
    if (!consumeConn || !publishConn) throw new GatewayError('GW_ERR_BROKER_UNAVAILABLE', 'not connected to the broker', { retryAfterS: 1 });
    const current = this.#channels;
    if (current && current.consumeConn === consumeConn && current.publishConn === publishConn && !current.closed) return current;
    const [ch, pub] = await Promise.all([openChannel(consumeConn, log), openConfirmChannel(publishConn, log)]);
    const channels = { ch, pub, consumeConn, publishConn, closed: false };
    const onClose = (): void => {
      channels.closed = true;
    };
    ch.on('close', onClose);
    pub.on('close', onClose);
    this.#channels = channels;
    return channels;
  }
}

async function openChannel(conn: ChannelModel, log: Logger): Promise<Channel> {
  const ch = await conn.createChannel();
  ch.on('error', (err: Error) => log.warn({ err }, 'dlq consume channel error'));
  return ch;
}

async function openConfirmChannel(conn: ChannelModel, log: Logger): Promise<ConfirmChannel> {
  const ch = await conn.createConfirmChannel();
  ch.on('error', (err: Error) => log.warn({ err }, 'dlq publish channel error'));
  return ch;
}

/** One pass over a DLQ; see {@link DeadLetters}. */
class Rotation {
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

  #publishCopy(msg: ConsumeMessage, action: 'keep' | { replay: { resetAttempts: boolean } }): Promise<void> {
    const [exchange, key, options]: [string, string, Options.Publish] = action === 'keep'
      ? ['', this.#queueName, copyOptions(msg, { rotate: this.#id })]
      : [this.#topology.names.workExchange, this.#topology.names.workRoutingKey(this.#service), copyOptions(msg, action)];
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
