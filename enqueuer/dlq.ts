import type { Channel, ChannelModel, ConfirmChannel, ConsumeMessage } from 'amqplib';
import type { Logger } from 'pino';
import type { BrokerConnection } from '../shared/amqp/broker-connection.ts';
import { GatewayError, isGatewayError } from '../shared/errors.ts';
import type { Topology } from '../shared/topology/topology.ts';
import type { ConnectionSource } from './broker.ts';
import { toEntry, type DeadLetterEntry } from './dlq-entry.ts';
import { Rotation, type Visit } from './dlq-rotation.ts';

export interface DeadLettersOptions {
  /** Opens the two connections (started and closed with the enqueuer's others). */
  broker: ConnectionSource;
  topology: Topology;
  logger: Logger;
  /** Upper bound of one browse/replay/discard, waiting for the DLQ included (ms). @default 30000 */
  opTimeoutMs?: number;
  /** Largest DLQ (messages) the API operates on; beyond it use the management UI. @default 10000 */
  maxScan?: number;
  /** Operations waiting (running included) on this replica; beyond it 429. @default 64 */
  maxWaiting?: number;
  /** Operations one tenant may have waiting (running included); beyond it 429. @default 8 */
  maxWaitingPerTenant?: number;
}

interface QueuedOp {
  run: () => Promise<void>;
  resolve: () => void;
  reject: (err: unknown) => void;
}

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
  /** Replay into this service's work queue instead (a redirect; the caller checked the key may use it). */
  redirectTo?: string | undefined;
  /**
   * Called once per id just before its first copy is published (not in a dry run): the place to
   * record the job `queued` again, so that record precedes any event of the replayed run (a
   * dequeuer may take the copy before the rotation ends).
   */
  onReplay?: ((jobId: string) => void) | undefined;
}

export interface ReplayResult {
  replayed: string[];
  notFound: string[];
  dryRun: boolean;
}

/**
 * Browse, replay and discard on the per-service DLQs, on connections of their own (one consumes,
 * one publishes: an alarm that blocks the publisher must not stall acks).
 *
 * Every operation is one **rotation** (docs/adr/0200-dlq-operations-by-rotation.md): read
 * N = the DLQ's message count, consume exactly N, and for each either publish a copy to the tail of
 * the same DLQ (kept), to the work exchange (replayed) or nothing (discarded); the original is acked
 * only after the broker confirmed its copy. Copies are published in delivery order on one channel,
 * so the DLQ ends in the same order with nothing lost. The DLQ is single-active-consumer, so one
 * replica rotates at a time; inside this process operations are serialized.
 */
export class DeadLetters {
  #o: Required<DeadLettersOptions>;
  #consume: BrokerConnection;
  #publish: BrokerConnection;
  /** Waiting operations per tenant; tenants are served round-robin, one operation at a time. */
  #waiting = new Map<string, QueuedOp[]>();
  #waitingCount = 0;
  #running: Promise<void> | undefined;
  /** Moving average of one operation's duration (ms), for `Retry-After`. */
  #avgOpMs = 200;
  #channels: { ch: Channel; pub: ConfirmChannel; consumeConn: ChannelModel; publishConn: ChannelModel; closed: boolean } | undefined;

  constructor(options: DeadLettersOptions) {
    this.#o = { opTimeoutMs: 30_000, maxScan: 10_000, maxWaiting: 64, maxWaitingPerTenant: 8, ...options };
    this.#consume = options.broker.open('enqueuer-dlq-consume', { logger: options.logger });
    this.#publish = options.broker.open('enqueuer-dlq-publish', { logger: options.logger });
  }

  /** Operations waiting or running (metrics, tests). */
  get waiting(): number {
    return this.#waitingCount + (this.#running ? 1 : 0);
  }

  /** Waits for the running operation and closes the channels (the connections close with the broker). */
  async close(): Promise<void> {
    while (this.#running) await this.#running.catch(() => {});
    const channels = this.#channels;
    this.#channels = undefined;
    if (channels) await Promise.all([channels.ch.close().catch(() => {}), channels.pub.close().catch(() => {})]);
  }

  /** The tenant's entries in DLQ order, `limit` of them from `offset`. */
  async browse(service: string, tenant: string, page: { offset: number; limit: number }): Promise<BrowsePage> {
    const all = await this.entries(service, tenant);
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
    await this.#serialized(service, tenant, (msg) => {
      const entry = toEntry(msg);
      if (entry.tenant !== tenant || !entry.jobId) return 'keep';
      if (!req.all && !wanted.has(entry.jobId)) return 'keep';
      if (!dryRun && !found.has(entry.jobId)) req.onReplay?.(entry.jobId);
      found.add(entry.jobId);
      replayed.push(entry.jobId);
      return dryRun ? 'keep' : { replay: { resetAttempts: req.resetAttempts === true, ...(req.redirectTo === undefined ? {} : { service: req.redirectTo }) } };
    });
    return { replayed, notFound: [...wanted].filter((id) => !found.has(id)), dryRun };
  }

  /** Discards the tenant's entry `id` (every copy of it); returns how many messages were removed. */
  async discard(service: string, tenant: string, id: string): Promise<number> {
    return (await this.discardMany(service, tenant, [id])).removed;
  }

  /** Discards the tenant's entries named by `ids` (every copy of each) in one rotation. */
  async discardMany(service: string, tenant: string, ids: readonly string[]): Promise<{ discarded: string[]; notFound: string[]; removed: number }> {
    const wanted = new Set(ids);
    const found = new Set<string>();
    let removed = 0;
    await this.#serialized(service, tenant, (msg) => {
      const entry = toEntry(msg);
      if (entry.tenant !== tenant || !entry.jobId || !wanted.has(entry.jobId)) return 'keep';
      found.add(entry.jobId);
      removed++;
      return 'discard';
    });
    return { discarded: [...found], notFound: [...wanted].filter((id) => !found.has(id)), removed };
  }

  /** Every entry of the tenant (one browse rotation, bounded by `maxScan`). */
  async entries(service: string, tenant: string): Promise<DeadLetterEntry[]> {
    const all: DeadLetterEntry[] = [];
    await this.#serialized(service, tenant, (msg) => {
      const entry = toEntry(msg);
      if (entry.tenant === tenant) all.push(entry);
      return 'keep';
    });
    return all;
  }

  /**
   * Runs one rotation at a time on this replica (the channels are shared and the DLQ is
   * single-active-consumer anyway). The wait is bounded, in total and per tenant (429 with a
   * `Retry-After` from the average operation time), and tenants take turns (least recently served
   * first): one tenant's burst delays another's operation by at most the one already running.
   */
  #serialized(service: string, tenant: string, visit: (msg: ConsumeMessage) => Visit): Promise<void> {
    const mine = this.#waiting.get(tenant) ?? [];
    const running = this.#running ? 1 : 0;
    const retryAfterS = (ops: number): number => Math.max(1, Math.ceil((ops * this.#avgOpMs) / 1000));
    if (mine.length + (this.#runningTenant === tenant ? 1 : 0) >= this.#o.maxWaitingPerTenant) {
      return Promise.reject(new GatewayError('GW_ERR_DLQ_TOO_MANY_OPS', `this tenant has ${this.#o.maxWaitingPerTenant} DLQ operations waiting`, { retryAfterS: retryAfterS(this.#waitingCount + running) }));
    }
    if (this.#waitingCount + running >= this.#o.maxWaiting) {
      return Promise.reject(new GatewayError('GW_ERR_DLQ_TOO_MANY_OPS', `${this.#o.maxWaiting} DLQ operations waiting on this replica`, { retryAfterS: retryAfterS(this.#waitingCount + running) }));
    }
    return new Promise<void>((resolve, reject) => {
      mine.push({ run: () => this.#rotate(service, visit), resolve, reject });
      if (!this.#waiting.has(tenant)) this.#waiting.set(tenant, mine);
      this.#waitingCount++;
      this.#pump();
    });
  }

  #runningTenant: string | undefined;
  /** When each tenant with work waiting or running was last served; least recently served goes first. */
  #lastServed = new Map<string, number>();
  #served = 0;

  /** Starts the next operation: the waiting tenant served least recently (never served = first). */
  #pump(): void {
    if (this.#running) return;
    let tenant: string | undefined;
    let best = Infinity;
    for (const t of this.#waiting.keys()) {
      const at = this.#lastServed.get(t) ?? 0;
      if (at < best) {
        best = at;
        tenant = t;
      }
    }
    if (tenant === undefined) return;
    const ops = this.#waiting.get(tenant)!;
    const op = ops.shift()!;
    this.#waitingCount--;
    if (!ops.length) this.#waiting.delete(tenant);
    this.#lastServed.set(tenant, ++this.#served);
    this.#runningTenant = tenant;
    const t0 = performance.now();
    this.#running = op.run().then(op.resolve, op.reject).finally(() => {
      this.#avgOpMs = 0.8 * this.#avgOpMs + 0.2 * (performance.now() - t0);
      this.#running = undefined;
      this.#runningTenant = undefined;
      if (!this.#waiting.has(tenant)) this.#lastServed.delete(tenant);
      this.#pump();
    });
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
